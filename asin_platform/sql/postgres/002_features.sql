-- 002_features (postgres): features_daily and score_baseline_daily of asin_platform/schemas.py,
-- generated with warehouse.create_table_sql; test_schemas.py checks they agree. Primary keys as in 001.

CREATE TABLE "features_daily" (
    "site" text NOT NULL,
    "date" date NOT NULL,
    "asin" text NOT NULL,
    "category_id" text,
    "bsr_log_slope_7d" double precision,
    "bsr_log_slope_14d" double precision,
    "bsr_log_slope_30d" double precision,
    "bsr_pctl" double precision,
    "bsr_pctl_change_7d" double precision,
    "bsr_pctl_change_30d" double precision,
    "est_sales_7d_mean" double precision,
    "est_sales_30d_mean" double precision,
    "price_cv_30d" double precision,
    "price_change_vs_median_30d" double precision,
    "promo_flag" boolean,
    "review_velocity_7d" double precision,
    "review_velocity_14d" double precision,
    "review_velocity_30d" double precision,
    "rating_mean_30d" double precision,
    "rating_change_30d" double precision,
    "new_offer_count" integer,
    "new_offer_change_14d" integer,
    "kw_top10_count" integer,
    "kw_top50_count" integer,
    "kw_mean_rank_change_7d" double precision,
    "title_length" integer,
    "bullet_count" integer,
    "image_count" integer,
    "has_aplus" boolean,
    "attribute_flag_count" integer,
    "listing_quality_score" double precision,
    "age_days" integer,
    PRIMARY KEY ("site", "date", "asin")
);

CREATE TABLE "score_baseline_daily" (
    "site" text NOT NULL,
    "date" date NOT NULL,
    "asin" text NOT NULL,
    "category_id" text,
    "explosive_score" double precision,
    "z_bsr_trend" double precision,
    "z_est_sales" double precision,
    "z_review_velocity" double precision,
    "z_listing_quality" double precision,
    "z_keyword_gain" double precision,
    "z_price_volatility" double precision,
    "scope" text,
    "reason" text,
    "rank_in_category" integer,
    "rank_in_site" integer,
    PRIMARY KEY ("site", "date", "asin")
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
