-- 005_model_registry (duckdb): the model registry every run shares through the warehouse
-- (asin_platform/storage/registry.py, schemas.MODEL_REGISTRY): one row per trained model, its files in
-- the artifact store at artifact_url. Promotion flips `promoted` in one transaction; DuckDB has one
-- writer process at a time, so no two promotions interleave.

CREATE TABLE "model_registry" (
    "version" VARCHAR NOT NULL,
    "created_at" TIMESTAMP WITH TIME ZONE,
    "train_start" DATE,
    "train_end" DATE,
    "valid_ndcg_20" DOUBLE,
    "baseline_valid_ndcg_20" DOUBLE,
    "gate_passed" BOOLEAN,
    "metrics" VARCHAR,
    "card" VARCHAR,
    "artifact_url" VARCHAR,
    "promoted" BOOLEAN,
    "promoted_at" TIMESTAMP WITH TIME ZONE
);
