-- 008_columnar_slices (duckdb): the parquet copy of a mart slice the feature layer reads
-- (storage/columnar.py, settings.scale.columnar_mart). A row = the copy of (table_name, site, date) whose
-- file is <artifacts>/columnar/<table_name>/site=<site>/date=<date>/<version>.parquet, holding `row_count`
-- rows. It is written in the transaction that replaces the warehouse slice, and any replace of that
-- slice deletes it first (resources/warehouse/transaction.py), so a row names a copy equal to the slice.
-- DuckDB: no primary key (a delete and re-insert of one key in one transaction); the writer keeps it unique.

CREATE TABLE columnar_slices (
    table_name VARCHAR NOT NULL,
    site       VARCHAR NOT NULL,
    date       DATE NOT NULL,
    version    VARCHAR NOT NULL,
    row_count  BIGINT NOT NULL,
    written_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
