-- 004_leases (duckdb): one fetch per partition at a time (resources/warehouse/leases.py).
-- A row = a lease on (resource, site, date) held by `holder` (a run id) until `expires_at`
-- (database clock). A lease past `expires_at` belongs to a dead or stuck holder and may be taken over.
-- DuckDB: a primary key here (unlike the data tables) because ON CONFLICT needs one and the table stays tiny.

CREATE TABLE ingest_leases (
    resource    VARCHAR NOT NULL,
    site        VARCHAR NOT NULL,
    date        DATE NOT NULL,
    holder      VARCHAR NOT NULL,
    acquired_at TIMESTAMP WITH TIME ZONE NOT NULL,
    expires_at  TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (resource, site, date)
);
