-- 007_model_verdicts (duckdb): why the weekly retraining promoted or refused each model
-- (core/backtest.py promotion_verdict, assets/training.py ranker_model). A new model is promoted only if
-- its mean NDCG@20 on the latest walk-forward folds is not below the promoted model's minus a tolerance
-- (settings.promotion); a refused one stays registered as 'rejected' with the reason and both figures.

ALTER TABLE model_registry ADD COLUMN "verdict" VARCHAR;
ALTER TABLE model_registry ADD COLUMN "verdict_reason" VARCHAR;
ALTER TABLE model_registry ADD COLUMN "backtest_ndcg_20" DOUBLE;
ALTER TABLE model_registry ADD COLUMN "compared_version" VARCHAR;
ALTER TABLE model_registry ADD COLUMN "compared_backtest_ndcg_20" DOUBLE;
ALTER TABLE model_registry ADD COLUMN "backtest_folds" VARCHAR;
