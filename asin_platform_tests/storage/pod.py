"""One "pod" of the scale-out tests: a fresh process that runs one phase of the model layer against
the warehouse and the stores its environment names, and prints what it did as one JSON line.

    python -m asin_platform_tests.storage.pod train
    python -m asin_platform_tests.storage.pod predict PARTITION_DATE SITE

The warehouse URL comes from ``ASIN_PLATFORM_WAREHOUSE_URL`` (and a PostgreSQL schema from
``POD_PG_SCHEMA``, the tests' throwaway one), the stores from the settings'
environment (``ASIN_PLATFORM__STORAGE__ARTIFACTS_URL`` ...), S3 credentials and endpoint from the AWS
variables: exactly what a Kubernetes run pod gets.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date
from typing import Any

import dagster as dg

from asin_platform.assets import exports, inference, training
from asin_platform.partitions import build_date_site_partitions, to_partition_key
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import load_settings
from asin_platform.storage import artifacts_store, find_model, promote_model

FAST = json.dumps({"num_threads": 1, "learning_rate": 0.1})
TRAIN_CONFIG = {
    "train_samples": {"config": {"days": 140, "sample_every": 2}},
    "ranker_model": {"config": {"rounds": 40, "early_stopping": 10, "params_json": FAST}},
    "model_evaluation": {"config": {"oracle": False}},
}


def _config() -> dict[str, Any]:
    """TRAIN_CONFIG, with a 2-trial Optuna search first when ``POD_TUNE`` is set."""
    if not os.environ.get("POD_TUNE"):
        return TRAIN_CONFIG
    tuned = {**TRAIN_CONFIG["ranker_model"]["config"], "tune": True, "trials": 2}
    return {**TRAIN_CONFIG, "ranker_model": {"config": tuned}}


def _run(selection: list[str], warehouse: Warehouse, partition_key: Any = None) -> dg.ExecuteInProcessResult:
    settings = load_settings()
    partitions = build_date_site_partitions(settings)
    assets = [
        *training.build_assets(settings, partitions),
        *inference.build_assets(settings, partitions),
        *exports.build_assets(settings, partitions),
    ]
    result = dg.materialize(
        assets,
        selection=selection,
        resources={"warehouse": warehouse, "settings": settings},
        partition_key=partition_key,
        run_config={"ops": {k: v for k, v in _config().items() if k in selection}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return result


def main(argv: list[str]) -> None:
    phase, rest = argv[0], argv[1:]
    schema = os.environ.get("POD_PG_SCHEMA", "public")
    warehouse = Warehouse(url=os.environ["ASIN_PLATFORM_WAREHOUSE_URL"], pg_schema=schema)
    if phase == "train":
        _run(["train_samples", "ranker_model", "model_evaluation"], warehouse)
        newest = find_model(warehouse, "newest")
        promote_model(warehouse, newest.version, artifacts_store(load_settings()))
        print(json.dumps({"version": newest.version, "artifact_url": newest.artifact_url}))
    elif phase == "predict":
        day, site = date.fromisoformat(rest[0]), rest[1]
        result = _run(["predictions_rank_daily", "top_candidates"], warehouse, to_partition_key(day, site))
        paths = {
            node: result.asset_materializations_for_node(node)[0].metadata["path"].value
            for node in ("predictions_rank_daily", "top_candidates")
        }
        print(json.dumps({"paths": paths}))
    else:
        raise SystemExit(f"unknown phase {phase!r}: train or predict")


if __name__ == "__main__":
    main(sys.argv[1:])
