-- 001_ingest (DuckDB): the six ingest tables of asin_platform/schemas.py (INGEST_TABLES).
-- Column order and types mirror schemas.py; asin_platform_tests/test_schemas.py checks they agree
-- (polars -> SQL type map: SQL_TYPES in asin_platform/resources/warehouse.py).
-- No PRIMARY KEY and no (site, date) index, deliberately: DuckDB backs both with ART indexes, and
-- deleting rows from an ART index costs ~50 us per row (duckdb 2.0.1 here: replacing a 50k-row slice
-- took ~5 s with the key, ~0.02 s without), the very operation every partition write does; ART indexes
-- under heavy delete/update also grow the file without bound (duckdb#19468). Range filters on
-- (site, date) are served by DuckDB's per-row-group min/max zonemaps instead. Keys stay unique
-- because the Warehouse checks them before every write (inside the frame, and against stored rows
-- when the key does not contain site and date), matching what the PostgreSQL primary keys enforce.
-- Key columns are NOT NULL, as a primary key would make them.
-- Applied once by Warehouse.setup() in one transaction and recorded in schema_migrations.

-- key (payload_id)
CREATE TABLE raw_payloads (
    payload_id      VARCHAR NOT NULL,
    site            VARCHAR NOT NULL,
    date            DATE NOT NULL,
    source          VARCHAR,
    endpoint        VARCHAR,
    request_params  VARCHAR,
    status          INTEGER,
    attempts        INTEGER,
    fetched_at      TIMESTAMP WITH TIME ZONE,
    body            VARCHAR,
    payload_hash    VARCHAR,
    error           VARCHAR,
    run_id          VARCHAR
);

-- Several rejected records may share every descriptive column (two bad reviews of one ASIN in one
-- payload): quarantine's key is not unique.
CREATE TABLE quarantine (
    site            VARCHAR NOT NULL,
    date            DATE NOT NULL,
    payload_id      VARCHAR,
    table_name      VARCHAR,
    asin            VARCHAR,
    reason          VARCHAR,
    detail          VARCHAR,
    record          VARCHAR,
    quarantined_at  TIMESTAMP WITH TIME ZONE
);

-- key (site, asin)
CREATE TABLE dim_asin (
    site            VARCHAR NOT NULL,
    asin            VARCHAR NOT NULL,
    title           VARCHAR,
    brand           VARCHAR,
    category_id     VARCHAR,
    category_path   VARCHAR,
    subcategory_id  VARCHAR,
    listed_since    DATE,
    first_seen      DATE,
    last_seen       DATE,
    source          VARCHAR
);

-- key (site, date, asin)
CREATE TABLE mart_timeseries_daily (
    site                  VARCHAR NOT NULL,
    date                  DATE NOT NULL,
    asin                  VARCHAR NOT NULL,
    category_id           VARCHAR,
    subcategory_id        VARCHAR,
    price                 DOUBLE,
    bsr_root              BIGINT,
    bsr_sub               BIGINT,
    rating                DOUBLE,
    review_count          BIGINT,
    new_offer_count       INTEGER,
    buybox_seller         VARCHAR,
    title_length          INTEGER,
    bullet_count          INTEGER,
    image_count           INTEGER,
    has_aplus             BOOLEAN,
    attribute_flag_count  INTEGER,
    listed_since          DATE,
    flag_bsr_invalid      BOOLEAN,
    flag_rating_invalid   BOOLEAN,
    flag_price_invalid    BOOLEAN,
    flag_price_spike      BOOLEAN,
    source                VARCHAR,
    payload_id            VARCHAR,
    fetched_at            TIMESTAMP WITH TIME ZONE
);

-- key (site, asin, review_id)
CREATE TABLE fact_reviews (
    site        VARCHAR NOT NULL,
    date        DATE NOT NULL,
    asin        VARCHAR NOT NULL,
    review_id   VARCHAR NOT NULL,
    rating      TINYINT,
    verified    BOOLEAN,
    payload_id  VARCHAR
);

-- key (site, date, asin, keyword)
CREATE TABLE fact_keywords (
    site           VARCHAR NOT NULL,
    date           DATE NOT NULL,
    asin           VARCHAR NOT NULL,
    keyword        VARCHAR NOT NULL,
    search_volume  BIGINT,
    rank           INTEGER,
    payload_id     VARCHAR
);
