-- 003_model (postgres): the model layer's tables, defined in the modules that write them:
-- train_samples_{bin,rank,reg} (asin_platform/core/labels.py; their feature columns follow
-- FEATURES_DAILY, so a feature added there needs a migration here too), predictions_rank_daily
-- (core/predict.py) and model_evaluation (core/metrics.py, unpartitioned). Generated with
-- warehouse.create_table_sql; test_schemas.py checks they agree.
-- Primary key = the table's key, plus a (site, date) index where the key does not start with them.

CREATE TABLE "train_samples_bin" (
    "site" text NOT NULL,
    "date" date NOT NULL,
    "asin" text NOT NULL,
    "category_id" text,
    "split" text,
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
    "explodes" smallint,
    PRIMARY KEY ("site", "date", "asin")
);

CREATE TABLE "train_samples_rank" (
    "site" text NOT NULL,
    "date" date NOT NULL,
    "asin" text NOT NULL,
    "category_id" text,
    "split" text,
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
    "relevance" smallint,
    "explodes" smallint,
    PRIMARY KEY ("site", "date", "asin")
);

CREATE TABLE "train_samples_reg" (
    "site" text NOT NULL,
    "date" date NOT NULL,
    "asin" text NOT NULL,
    "category_id" text,
    "split" text,
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
    "log_sales_ratio" double precision,
    PRIMARY KEY ("site", "date", "asin")
);

CREATE TABLE "predictions_rank_daily" (
    "site" text NOT NULL,
    "date" date NOT NULL,
    "asin" text NOT NULL,
    "category_id" text,
    "model_score" double precision,
    "rank_in_site" integer,
    "rank_in_category" integer,
    "model_version" text,
    "scored_at" timestamp with time zone,
    PRIMARY KEY ("site", "date", "asin")
);

CREATE TABLE "model_evaluation" (
    "model_version" text NOT NULL,
    "split" text NOT NULL,
    "ranker" text NOT NULL,
    "k" integer NOT NULL,
    "ndcg" double precision,
    "precision" double precision,
    "recall" double precision,
    "queries_kept" integer,
    "queries_total" integer,
    "first_date" date,
    "last_date" date,
    "evaluated_at" timestamp with time zone,
    PRIMARY KEY ("model_version", "split", "ranker", "k")
);

-- Model predictions of every (site, date) beside the product and the baseline's view of it: what
-- the pred_rank_daily exports and the dashboards read.
CREATE VIEW vw_pred_rank_daily AS
SELECT p.site, p.date, p.rank_in_site, p.rank_in_category, p.asin, d.title, d.brand, p.category_id,
       d.category_path, m.bsr_root, m.price, m.review_count, m.rating, p.model_score, p.model_version,
       s.explosive_score, s.rank_in_site AS baseline_rank_in_site
FROM predictions_rank_daily AS p
LEFT JOIN dim_asin AS d ON d.site = p.site AND d.asin = p.asin
LEFT JOIN mart_timeseries_daily AS m ON m.site = p.site AND m.date = p.date AND m.asin = p.asin
LEFT JOIN score_baseline_daily AS s ON s.site = p.site AND s.date = p.date AND s.asin = p.asin;
