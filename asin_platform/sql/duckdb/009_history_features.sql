-- 009_history_features (duckdb): features_daily gains the product-against-its-own-history columns of
-- core/history_features.py (listing changes, the BSR's prior week and own level, review burst, price step).
-- train_samples_{bin,rank,reg} carry the feature columns before their targets (core/labels.py), so they
-- are rebuilt in the new column order with their rows kept (the new columns null until the samples are
-- rebuilt); vw_features_latest is recreated so it lists the new columns.

ALTER TABLE features_daily ADD COLUMN "listing_change_days" INTEGER;
ALTER TABLE features_daily ADD COLUMN "image_count_change_30d" INTEGER;
ALTER TABLE features_daily ADD COLUMN "bullet_count_change_30d" INTEGER;
ALTER TABLE features_daily ADD COLUMN "title_length_change_30d" INTEGER;
ALTER TABLE features_daily ADD COLUMN "listing_quality_change_30d" DOUBLE;
ALTER TABLE features_daily ADD COLUMN "bsr_log_drop_7d_prior" DOUBLE;
ALTER TABLE features_daily ADD COLUMN "bsr_log_z_7d_prior" DOUBLE;
ALTER TABLE features_daily ADD COLUMN "review_burst_z_7d" DOUBLE;
ALTER TABLE features_daily ADD COLUMN "price_step_7d_prior" DOUBLE;

CREATE TABLE "train_samples_bin_009" (
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
    "listing_change_days" INTEGER,
    "image_count_change_30d" INTEGER,
    "bullet_count_change_30d" INTEGER,
    "title_length_change_30d" INTEGER,
    "listing_quality_change_30d" DOUBLE,
    "bsr_log_drop_7d_prior" DOUBLE,
    "bsr_log_z_7d_prior" DOUBLE,
    "review_burst_z_7d" DOUBLE,
    "price_step_7d_prior" DOUBLE,
    "explodes" TINYINT
);
INSERT INTO "train_samples_bin_009" ("site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "explodes")
SELECT "site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "explodes" FROM "train_samples_bin";
DROP TABLE "train_samples_bin";
ALTER TABLE "train_samples_bin_009" RENAME TO "train_samples_bin";

CREATE TABLE "train_samples_rank_009" (
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
    "listing_change_days" INTEGER,
    "image_count_change_30d" INTEGER,
    "bullet_count_change_30d" INTEGER,
    "title_length_change_30d" INTEGER,
    "listing_quality_change_30d" DOUBLE,
    "bsr_log_drop_7d_prior" DOUBLE,
    "bsr_log_z_7d_prior" DOUBLE,
    "review_burst_z_7d" DOUBLE,
    "price_step_7d_prior" DOUBLE,
    "relevance" TINYINT,
    "explodes" TINYINT
);
INSERT INTO "train_samples_rank_009" ("site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "relevance", "explodes")
SELECT "site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "relevance", "explodes" FROM "train_samples_rank";
DROP TABLE "train_samples_rank";
ALTER TABLE "train_samples_rank_009" RENAME TO "train_samples_rank";

CREATE TABLE "train_samples_reg_009" (
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
    "listing_change_days" INTEGER,
    "image_count_change_30d" INTEGER,
    "bullet_count_change_30d" INTEGER,
    "title_length_change_30d" INTEGER,
    "listing_quality_change_30d" DOUBLE,
    "bsr_log_drop_7d_prior" DOUBLE,
    "bsr_log_z_7d_prior" DOUBLE,
    "review_burst_z_7d" DOUBLE,
    "price_step_7d_prior" DOUBLE,
    "log_sales_ratio" DOUBLE
);
INSERT INTO "train_samples_reg_009" ("site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "log_sales_ratio")
SELECT "site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "log_sales_ratio" FROM "train_samples_reg";
DROP TABLE "train_samples_reg";
ALTER TABLE "train_samples_reg_009" RENAME TO "train_samples_reg";

-- SELECT f.* is expanded when a view is created: recreated to list the new columns.
CREATE OR REPLACE VIEW vw_features_latest AS
SELECT f.*
FROM features_daily AS f
JOIN (SELECT site, max(date) AS latest FROM features_daily GROUP BY site) AS l
  ON l.site = f.site AND l.latest = f.date;
