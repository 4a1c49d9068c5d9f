-- 003_model (duckdb): the model layer's tables, defined in the modules that write them:
-- train_samples_{bin,rank,reg} (asin_platform/core/labels.py; their feature columns follow
-- FEATURES_DAILY, so a feature added there needs a migration here too), predictions_rank_daily
-- (core/predict.py) and model_evaluation (core/metrics.py, unpartitioned). Generated with
-- warehouse.create_table_sql; test_schemas.py checks they agree.
-- No primary key, as in 001 (slice deletes on ART indexes are slow); keys are checked by the
-- Warehouse before every write.

CREATE TABLE "train_samples_bin" (
    "site" VARCHAR NOT NULL,
    "date" DATE NOT NULL,
    "asin" VARCHAR NOT NULL,
    "category_id" VARCHAR,
    "split" VARCHAR,
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
    "age_days" INTEGER,
    "explodes" TINYINT
);

CREATE TABLE "train_samples_rank" (
    "site" VARCHAR NOT NULL,
    "date" DATE NOT NULL,
    "asin" VARCHAR NOT NULL,
    "category_id" VARCHAR,
    "split" VARCHAR,
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
    "age_days" INTEGER,
    "relevance" TINYINT,
    "explodes" TINYINT
);

CREATE TABLE "train_samples_reg" (
    "site" VARCHAR NOT NULL,
    "date" DATE NOT NULL,
    "asin" VARCHAR NOT NULL,
    "category_id" VARCHAR,
    "split" VARCHAR,
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
    "age_days" INTEGER,
    "log_sales_ratio" DOUBLE
);

CREATE TABLE "predictions_rank_daily" (
    "site" VARCHAR NOT NULL,
    "date" DATE NOT NULL,
    "asin" VARCHAR NOT NULL,
    "category_id" VARCHAR,
    "model_score" DOUBLE,
    "rank_in_site" INTEGER,
    "rank_in_category" INTEGER,
    "model_version" VARCHAR,
    "scored_at" TIMESTAMP WITH TIME ZONE
);

CREATE TABLE "model_evaluation" (
    "model_version" VARCHAR NOT NULL,
    "split" VARCHAR NOT NULL,
    "ranker" VARCHAR NOT NULL,
    "k" INTEGER NOT NULL,
    "ndcg" DOUBLE,
    "precision" DOUBLE,
    "recall" DOUBLE,
    "queries_kept" INTEGER,
    "queries_total" INTEGER,
    "first_date" DATE,
    "last_date" DATE,
    "evaluated_at" TIMESTAMP WITH TIME ZONE
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
