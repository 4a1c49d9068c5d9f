-- 006_reasons_outcomes (duckdb): why a product is on the model's list, and whether the lists came true.
-- predictions_rank_daily gains its top feature contributions (core/explain.py): `reasons` (JSON) and
-- `reasons_text` (for people); the view the exports and dashboards read carries both.

ALTER TABLE predictions_rank_daily ADD COLUMN "reasons" VARCHAR;
ALTER TABLE predictions_rank_daily ADD COLUMN "reasons_text" VARCHAR;

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
    "site" VARCHAR NOT NULL,
    "date" DATE NOT NULL,
    "ranker" VARCHAR NOT NULL,
    "k" INTEGER NOT NULL,
    "ndcg" DOUBLE,
    "precision" DOUBLE,
    "positives" INTEGER,
    "items" INTEGER,
    "horizon" INTEGER,
    "model_version" VARCHAR,
    "evaluated_at" TIMESTAMP WITH TIME ZONE
);
