-- 004_leases (postgres): one fetch per partition at a time (resources/warehouse/leases.py).
-- A row = a lease on (resource, site, date) held by `holder` (a run id) until `expires_at`
-- (database clock). A lease past `expires_at` belongs to a dead or stuck holder and may be taken over.
-- PostgreSQL: the primary key makes concurrent acquisitions of one key wait for each other's commit.

CREATE TABLE ingest_leases (
    resource    text NOT NULL,
    site        text NOT NULL,
    date        DATE NOT NULL,
    holder      text NOT NULL,
    acquired_at timestamp with time zone NOT NULL,
    expires_at  timestamp with time zone NOT NULL,
    PRIMARY KEY (resource, site, date)
);
