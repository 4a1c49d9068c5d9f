-- 009_history_features (postgres): features_daily gains the product-against-its-own-history columns of
-- core/history_features.py (listing changes, the BSR's prior week and own level, review burst, price step).
-- train_samples_{bin,rank,reg} carry the feature columns before their targets (core/labels.py), so they
-- are rebuilt in the new column order with their rows kept (the new columns null until the samples are
-- rebuilt); vw_features_latest is recreated so it lists the new columns.

ALTER TABLE features_daily ADD COLUMN "listing_change_days" integer;
ALTER TABLE features_daily ADD COLUMN "image_count_change_30d" integer;
ALTER TABLE features_daily ADD COLUMN "bullet_count_change_30d" integer;
ALTER TABLE features_daily ADD COLUMN "title_length_change_30d" integer;
ALTER TABLE features_daily ADD COLUMN "listing_quality_change_30d" double precision;
ALTER TABLE features_daily ADD COLUMN "bsr_log_drop_7d_prior" double precision;
ALTER TABLE features_daily ADD COLUMN "bsr_log_z_7d_prior" double precision;
ALTER TABLE features_daily ADD COLUMN "review_burst_z_7d" double precision;
ALTER TABLE features_daily ADD COLUMN "price_step_7d_prior" double precision;

CREATE TABLE "train_samples_bin_009" (
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
    "listing_change_days" integer,
    "image_count_change_30d" integer,
    "bullet_count_change_30d" integer,
    "title_length_change_30d" integer,
    "listing_quality_change_30d" double precision,
    "bsr_log_drop_7d_prior" double precision,
    "bsr_log_z_7d_prior" double precision,
    "review_burst_z_7d" double precision,
    "price_step_7d_prior" double precision,
    "explodes" smallint,
    PRIMARY KEY ("site", "date", "asin")
);
INSERT INTO "train_samples_bin_009" ("site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "explodes")
SELECT "site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "explodes" FROM "train_samples_bin";
DROP TABLE "train_samples_bin";
ALTER TABLE "train_samples_bin_009" RENAME TO "train_samples_bin";
ALTER TABLE "train_samples_bin" RENAME CONSTRAINT "train_samples_bin_009_pkey" TO "train_samples_bin_pkey";

CREATE TABLE "train_samples_rank_009" (
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
    "listing_change_days" integer,
    "image_count_change_30d" integer,
    "bullet_count_change_30d" integer,
    "title_length_change_30d" integer,
    "listing_quality_change_30d" double precision,
    "bsr_log_drop_7d_prior" double precision,
    "bsr_log_z_7d_prior" double precision,
    "review_burst_z_7d" double precision,
    "price_step_7d_prior" double precision,
    "relevance" smallint,
    "explodes" smallint,
    PRIMARY KEY ("site", "date", "asin")
);
INSERT INTO "train_samples_rank_009" ("site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "relevance", "explodes")
SELECT "site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "relevance", "explodes" FROM "train_samples_rank";
DROP TABLE "train_samples_rank";
ALTER TABLE "train_samples_rank_009" RENAME TO "train_samples_rank";
ALTER TABLE "train_samples_rank" RENAME CONSTRAINT "train_samples_rank_009_pkey" TO "train_samples_rank_pkey";

CREATE TABLE "train_samples_reg_009" (
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
    "listing_change_days" integer,
    "image_count_change_30d" integer,
    "bullet_count_change_30d" integer,
    "title_length_change_30d" integer,
    "listing_quality_change_30d" double precision,
    "bsr_log_drop_7d_prior" double precision,
    "bsr_log_z_7d_prior" double precision,
    "review_burst_z_7d" double precision,
    "price_step_7d_prior" double precision,
    "log_sales_ratio" double precision,
    PRIMARY KEY ("site", "date", "asin")
);
INSERT INTO "train_samples_reg_009" ("site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "log_sales_ratio")
SELECT "site", "date", "asin", "category_id", "split", "bsr_log_slope_7d", "bsr_log_slope_14d", "bsr_log_slope_30d", "bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d", "est_sales_7d_mean", "est_sales_30d_mean", "price_cv_30d", "price_change_vs_median_30d", "promo_flag", "review_velocity_7d", "review_velocity_14d", "review_velocity_30d", "rating_mean_30d", "rating_change_30d", "new_offer_count", "new_offer_change_14d", "kw_top10_count", "kw_top50_count", "kw_mean_rank_change_7d", "title_length", "bullet_count", "image_count", "has_aplus", "attribute_flag_count", "listing_quality_score", "age_days", "log_sales_ratio" FROM "train_samples_reg";
DROP TABLE "train_samples_reg";
ALTER TABLE "train_samples_reg_009" RENAME TO "train_samples_reg";
ALTER TABLE "train_samples_reg" RENAME CONSTRAINT "train_samples_reg_009_pkey" TO "train_samples_reg_pkey";

-- SELECT f.* is expanded when a view is created: recreated to list the new columns.
DROP VIEW vw_features_latest;
CREATE VIEW vw_features_latest AS
SELECT f.*
FROM features_daily AS f
JOIN (SELECT site, max(date) AS latest FROM features_daily GROUP BY site) AS l
  ON l.site = f.site AND l.latest = f.date;
