-- 008_columnar_slices (postgres): the parquet copy of a mart slice the feature layer reads
-- (storage/columnar.py, settings.scale.columnar_mart). A row = the copy of (table_name, site, date) whose
-- file is <artifacts>/columnar/<table_name>/site=<site>/date=<date>/<version>.parquet, holding `row_count`
-- rows. It is written in the transaction that replaces the warehouse slice, and any replace of that
-- slice deletes it first (resources/warehouse/transaction.py), so a row names a copy equal to the slice.

CREATE TABLE columnar_slices (
    table_name text NOT NULL,
    site       text NOT NULL,
    date       DATE NOT NULL,
    version    text NOT NULL,
    row_count  bigint NOT NULL,
    written_at timestamp with time zone NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, site, date)
);
