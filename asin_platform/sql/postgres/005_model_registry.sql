-- 005_model_registry (postgres): the model registry every run shares through the warehouse
-- (asin_platform/storage/registry.py, schemas.MODEL_REGISTRY): one row per trained model, its files in
-- the artifact store at artifact_url. Promotion flips `promoted` in one transaction; the partial
-- unique index makes "at most one promoted model" the database's rule, so two concurrent promotions
-- cannot both commit.

CREATE TABLE "model_registry" (
    "version" text NOT NULL,
    "created_at" timestamp with time zone,
    "train_start" date,
    "train_end" date,
    "valid_ndcg_20" double precision,
    "baseline_valid_ndcg_20" double precision,
    "gate_passed" boolean,
    "metrics" text,
    "card" text,
    "artifact_url" text,
    "promoted" boolean,
    "promoted_at" timestamp with time zone,
    PRIMARY KEY ("version")
);

CREATE UNIQUE INDEX "model_registry_one_promoted" ON "model_registry" ("promoted") WHERE "promoted";
