-- 006_reasons_outcomes (postgres): why a product is on the model's list, and whether the lists came true.
-- predictions_rank_daily gains its top feature contributions (core/explain.py): `reasons` (JSON) and
-- `reasons_text` (for people); the view the exports and dashboards read carries both.

ALTER TABLE predictions_rank_daily ADD COLUMN "reasons" text;
ALTER TABLE predictions_rank_daily ADD COLUMN "reasons_text" text;

CREATE OR REPLACE VIEW vw_pred_rank_daily AS
SELECT p.site, p.date, p.rank_in_site, p.rank_in_category, p.asin, d.title, d.brand, p.category_id,
       d.category_path, m.bsr_root, m.price, m.review_count, m.rating, p.model_score, p.model_version,
       s.explosive_score, s.rank_in_site AS baseline_rank_in_site, p.reasons_text, p.reasons
FROM predictions_rank_daily AS p
LEFT JOIN dim_asin AS d ON d.site = p.site AND d.asin = p.asin
LEFT JOIN mart_timeseries_daily AS m ON m.site = p.site AND m.date = p.date AND m.asin = p.asin
LEFT JOIN score_baseline_daily AS s ON s.site = p.site AND s.date = p.date AND s.asin = p.asin;

-- What happened to each realised (site, prediction date)'s lists: NDCG@k / precision@k of the model
-- and the baseline against the labels once the horizon has passed (core/outcomes.py).
CREATE TABLE "realised_outcomes" (
    "site" text NOT NULL,
    "date" date NOT NULL,
    "ranker" text NOT NULL,
    "k" integer NOT NULL,
    "ndcg" double precision,
    "precision" double precision,
    "positives" integer,
    "items" integer,
    "horizon" integer,
    "model_version" text,
    "evaluated_at" timestamp with time zone,
    PRIMARY KEY ("site", "date", "ranker", "k")
);
