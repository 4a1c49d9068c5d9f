-- 001_ingest (PostgreSQL): the six ingest tables of asin_platform/schemas.py (INGEST_TABLES).
-- Column order and types mirror schemas.py; asin_platform_tests/test_schemas.py checks they agree
-- (polars -> SQL type map: SQL_TYPES in asin_platform/resources/warehouse.py).
-- Unqualified names: Warehouse connects with search_path = its pg_schema, so the same file serves
-- any schema. Applied once by Warehouse.setup() in one transaction and recorded in schema_migrations.
-- Every partitioned table is read and replaced by (site, date): where the primary key does not start
-- with (site, date) a separate index serves those slice deletes and range reads.

CREATE TABLE raw_payloads (
    payload_id      text NOT NULL PRIMARY KEY,
    site            text NOT NULL,
    date            date NOT NULL,
    source          text,
    endpoint        text,
    request_params  text,
    status          integer,
    attempts        integer,
    fetched_at      timestamp with time zone,
    body            text,
    payload_hash    text,
    error           text,
    run_id          text
);
CREATE INDEX raw_payloads_site_date ON raw_payloads (site, date);

-- Several rejected records may share every descriptive column (two bad reviews of one ASIN in one
-- payload), so quarantine has no primary key.
CREATE TABLE quarantine (
    site            text NOT NULL,
    date            date NOT NULL,
    payload_id      text,
    table_name      text,
    asin            text,
    reason          text,
    detail          text,
    record          text,
    quarantined_at  timestamp with time zone
);
CREATE INDEX quarantine_site_date ON quarantine (site, date);

CREATE TABLE dim_asin (
    site            text NOT NULL,
    asin            text NOT NULL,
    title           text,
    brand           text,
    category_id     text,
    category_path   text,
    subcategory_id  text,
    listed_since    date,
    first_seen      date,
    last_seen       date,
    source          text,
    PRIMARY KEY (site, asin)
);

-- The primary key (site, date, asin) already serves (site, date) lookups.
CREATE TABLE mart_timeseries_daily (
    site                  text NOT NULL,
    date                  date NOT NULL,
    asin                  text NOT NULL,
    category_id           text,
    subcategory_id        text,
    price                 double precision,
    bsr_root              bigint,
    bsr_sub               bigint,
    rating                double precision,
    review_count          bigint,
    new_offer_count       integer,
    buybox_seller         text,
    title_length          integer,
    bullet_count          integer,
    image_count           integer,
    has_aplus             boolean,
    attribute_flag_count  integer,
    listed_since          date,
    flag_bsr_invalid      boolean,
    flag_rating_invalid   boolean,
    flag_price_invalid    boolean,
    flag_price_spike      boolean,
    source                text,
    payload_id            text,
    fetched_at            timestamp with time zone,
    PRIMARY KEY (site, date, asin)
);

-- PostgreSQL has no 1-byte integer: polars Int8 is stored as smallint and cast back on read.
CREATE TABLE fact_reviews (
    site        text NOT NULL,
    date        date NOT NULL,
    asin        text NOT NULL,
    review_id   text NOT NULL,
    rating      smallint,
    verified    boolean,
    payload_id  text,
    PRIMARY KEY (site, asin, review_id)
);
CREATE INDEX fact_reviews_site_date ON fact_reviews (site, date);

-- The primary key (site, date, asin, keyword) already serves (site, date) lookups.
CREATE TABLE fact_keywords (
    site           text NOT NULL,
    date           date NOT NULL,
    asin           text NOT NULL,
    keyword        text NOT NULL,
    search_volume  bigint,
    rank           integer,
    payload_id     text,
    PRIMARY KEY (site, date, asin, keyword)
);
