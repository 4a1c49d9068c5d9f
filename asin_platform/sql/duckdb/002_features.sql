-- 002_features (duckdb): features_daily and score_baseline_daily of asin_platform/schemas.py,
-- generated with warehouse.create_table_sql; test_schemas.py checks they agree. No primary key, as in 001 (slice deletes on ART indexes are slow).

CREATE TABLE "features_daily" (
    "site" VARCHAR NOT NULL,
    "date" DATE NOT NULL,
    "asin" VARCHAR NOT NULL,
    "category_id" VARCHAR,
    "bsr_log_slope_7d" DOUBLE,
    "bsr_log_slope_14d" DOUBLE,
    "bsr_log_slope_30d" DOUBLE,
    "bsr_pctl" DOUBLE,
    "bsr_pctl_change_7d" DOUBLE,
    "bsr_pctl_change_30d" DOUBLE,
    "est_sales_7d_mean" DOUBLE,
    "est_sales_30d_mean" DOUBLE,
    "price_cv_30d" DOUBLE,
    "price_change_vs_median_30d" DOUBLE,
    "promo_flag" BOOLEAN,
    "review_velocity_7d" DOUBLE,
    "review_velocity_14d" DOUBLE,
    "review_velocity_30d" DOUBLE,
    "rating_mean_30d" DOUBLE,
    "rating_change_30d" DOUBLE,
    "new_offer_count" INTEGER,
    "new_offer_change_14d" INTEGER,
    "kw_top10_count" INTEGER,
    "kw_top50_count" INTEGER,
    "kw_mean_rank_change_7d" DOUBLE,
    "title_length" INTEGER,
    "bullet_count" INTEGER,
    "image_count" INTEGER,
    "has_aplus" BOOLEAN,
    "attribute_flag_count" INTEGER,
    "listing_quality_score" DOUBLE,
    "age_days" INTEGER
);

CREATE TABLE "score_baseline_daily" (
    "site" VARCHAR NOT NULL,
    "date" DATE NOT NULL,
    "asin" VARCHAR NOT NULL,
    "category_id" VARCHAR,
    "explosive_score" DOUBLE,
    "z_bsr_trend" DOUBLE,
    "z_est_sales" DOUBLE,
    "z_review_velocity" DOUBLE,
    "z_listing_quality" DOUBLE,
    "z_keyword_gain" DOUBLE,
    "z_price_volatility" DOUBLE,
    "scope" VARCHAR,
    "reason" VARCHAR,
    "rank_in_category" INTEGER,
    "rank_in_site" INTEGER
);

-- Feature-store / dashboard views of the seed (storage/feature_store_schema.sql).
-- The latest feature row of every ASIN per site: what a model or a dashboard reads "today".
CREATE VIEW vw_features_latest AS
SELECT f.*
FROM features_daily AS f
JOIN (SELECT site, max(date) AS latest FROM features_daily GROUP BY site) AS l
  ON l.site = f.site AND l.latest = f.date;

-- The top 100 candidates of every (site, date) with what a person needs to triage them.
CREATE VIEW vw_top_candidates_daily AS
SELECT s.site, s.date, s.rank_in_site AS rank, s.asin, d.title, d.brand, s.category_id,
       d.category_path, m.bsr_root, m.price, m.review_count, m.rating, s.explosive_score,
       s.reason
FROM score_baseline_daily AS s
LEFT JOIN dim_asin AS d ON d.site = s.site AND d.asin = s.asin
LEFT JOIN mart_timeseries_daily AS m ON m.site = s.site AND m.date = s.date AND m.asin = s.asin
WHERE s.rank_in_site <= 100;
