"""Scale-out without a shared disk (issue 15): two "pods" (processes with their own empty working
directories) share only the PostgreSQL warehouse and an S3-compatible server on loopback (moto).
Pod A trains and promotes, pod B predicts and exports; B's predictions equal those of a
single-directory run, the export is read back from its S3 URL, and neither pod leaves a file in its
working directory.

Needs ``ASIN_PLATFORM_TEST_POSTGRES_URL`` and moto (``pip install 'moto[server]'``, in the test extra).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asin_platform.resources.warehouse import Warehouse
from asin_platform.storage import find_model, read_frame
from asin_platform_tests.assets.test_model_assets import _seed
from asin_platform_tests.conftest import PgSchemas

BUCKET = "asin-platform-test"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
COMPARED = ["site", "date", "asin", "model_score", "rank_in_site", "rank_in_category"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An S3-compatible server on a free loopback port with one bucket; the env that reaches it."""
    pytest.importorskip(
        "moto", reason="the scale-out test needs moto's S3 server: pip install 'moto[server]'"
    )
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


def _pod(phase: list[str], cwd: Path, env: dict[str, str]) -> dict:
    cwd.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "asin_platform_tests.storage.pod", *phase],
        cwd=cwd, env={**os.environ, **env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list(cwd.iterdir()) == [], "a pod wrote into its working directory"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.postgres
def test_pod_a_trains_pod_b_predicts_through_postgres_and_s3(
    tmp_path: Path, s3: dict[str, str], pg_schemas: PgSchemas, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = pg_schemas.new()
    shared = Warehouse(url=pg_schemas.url, pg_schema=schema)
    day = _seed(shared).max()
    env = {
        **s3,
        "ASIN_PLATFORM_WAREHOUSE_URL": pg_schemas.url,
        "POD_PG_SCHEMA": schema,
        "ASIN_PLATFORM__STORAGE__ARTIFACTS_URL": f"s3://{BUCKET}/artifacts",
        "ASIN_PLATFORM__STORAGE__EXPORTS_URL": f"s3://{BUCKET}/exports",
    }
    trained = _pod(["train"], tmp_path / "pod_a", env)
    assert trained["artifact_url"] == f"s3://{BUCKET}/artifacts/models/{trained['version']}"
    assert find_model(shared, "promoted").version == trained["version"]

    exported = _pod(["predict", str(day), "US"], tmp_path / "pod_b", env)
    url = exported["paths"]["predictions_rank_daily"]
    assert url == f"s3://{BUCKET}/exports/US/pred_rank_daily_{day:%Y%m%d}.csv"
    predictions = shared.read("predictions_rank_daily", sites=["US"], start=day, end=day)
    assert set(predictions["model_version"]) == {trained["version"]}
    from_s3 = read_frame(url)  # the export, read back from object storage
    assert from_s3.height == min(100, predictions.height)
    assert from_s3["asin"].to_list() == predictions.sort("rank_in_site")["asin"].head(100).to_list()
    assert read_frame(exported["paths"]["top_candidates"]).height > 0

    # the same chain in one directory, local files and DuckDB: the same predictions. The reference
    # runs the pod's phases in this process (the pods above are what must be separate processes):
    # two interpreter + Dagster start-ups fewer.
    from asin_platform_tests.storage import pod

    single = tmp_path / "single"
    single.mkdir()
    local = Warehouse(url=str(single / "warehouse.duckdb"))
    _seed(local)
    monkeypatch.setenv("ASIN_PLATFORM_WAREHOUSE_URL", str(single / "warehouse.duckdb"))
    monkeypatch.chdir(single)
    pod.main(["train"])
    pod.main(["predict", str(day), "US"])
    assert (single / "artifacts" / "models" / "latest").exists()  # the file:// default: the run's directory
    reference = local.read("predictions_rank_daily", sites=["US"], start=day, end=day)
    assert predictions.sort("asin").select(COMPARED).equals(reference.sort("asin").select(COMPARED))


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_the_model_phase_writes_only_where_configured(tmp_path: Path) -> None:
    """The embedded default (file://, DuckDB, SQLite study): a training run with tuning, then a
    prediction and export run, from an empty working directory; every file lands under the
    configured warehouse, artifact and export locations, none in the working directory."""
    data, store = tmp_path / "data", tmp_path / "store"
    data.mkdir()
    day = _seed(Warehouse(url=str(data / "warehouse.duckdb"))).max()
    env = {
        "ASIN_PLATFORM_WAREHOUSE_URL": str(data / "warehouse.duckdb"),
        "ASIN_PLATFORM__ARTIFACTS_DIR": str(store / "artifacts"),
        "ASIN_PLATFORM__EXPORTS_DIR": str(store / "exports"),
        "POD_TUNE": "1",
    }
    before = _files(tmp_path)
    trained = _pod(["train"], tmp_path / "work", env)
    exported = _pod(["predict", str(day), "US"], tmp_path / "work2", env)
    written = _files(tmp_path) - before
    assert written and all(f.startswith(("data/", "store/")) for f in written), sorted(written)
    assert f"store/artifacts/models/{trained['version']}/model.txt" in written
    assert "store/artifacts/tuning/lgb_rank.db" in written
    assert exported["paths"]["predictions_rank_daily"] == str(
        store / "exports" / "US" / f"pred_rank_daily_{day:%Y%m%d}.csv"
    )
    assert f"store/exports/US/top_candidates_{day:%Y%m%d}_bsr.png" in written
