"""Two tuning workers on one Optuna study in PostgreSQL (storage/tuning_db.py): `tune-rank` run by
two processes at the same time numbers every trial once, and a worker killed mid-search leaves a
study the next run completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from asin_platform.settings import Settings, StorageSettings
from asin_platform.storage.tuning_db import optuna_schema, optuna_storage, schema_url, shown_storage
from asin_platform_tests.conftest import PgSchemas
from asin_platform_tests.core.test_ranker import rank_samples

CLI = str(Path(sys.executable).with_name("asin-platform"))
FAST = json.dumps({"num_threads": 1, "learning_rate": 0.1})


def _tune(data: Path, trials: int, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CLI, "tune-rank", "--data", str(data), "--trials", str(trials), "--rounds", "15",
         "--early-stopping", "5", "--params", FAST],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="lgb_rank", storage=url).get_trials(deepcopy=False)


def _complete(url: str) -> int:
    return sum(t.state == TrialState.COMPLETE for t in _trials(url))


def test_the_study_database_follows_the_warehouse(tmp_path: Path) -> None:
    pg = "postgresql://tuner:s3cret@db:5432/asin"
    url = optuna_storage(Settings(), pg, "prod")
    assert url == "postgresql+psycopg://tuner:s3cret@db:5432/asin?options=-csearch_path%3Dprod_optuna"
    assert "s3cret" not in shown_storage(url) and optuna_schema("prod") == "prod_optuna"
    assert schema_url("postgres://u@h/db?sslmode=require", "s") == (
        "postgresql+psycopg://u@h/db?sslmode=require&options=-csearch_path%3Ds"
    )
    local = Settings(artifacts_dir=tmp_path / "artifacts")
    assert (
        optuna_storage(local, str(tmp_path / "w.duckdb"))
        == f"sqlite:///{tmp_path}/artifacts/tuning/lgb_rank.db"
    )
    explicit = Settings(storage=StorageSettings(optuna_url="sqlite:////elsewhere.db"))
    assert optuna_storage(explicit, pg) == "sqlite:////elsewhere.db"
    remote = Settings(storage=StorageSettings(artifacts_url="s3://bucket/artifacts"))
    with pytest.raises(ValueError, match="storage.optuna_url"):
        optuna_storage(remote, str(tmp_path / "w.duckdb"))


@pytest.mark.postgres
def test_two_workers_share_one_study_and_a_killed_one_is_resumed(
    tmp_path: Path, pg_schemas: PgSchemas
) -> None:
    url = schema_url(pg_schemas.url, pg_schemas.new())
    data = tmp_path / "samples.parquet"
    rank_samples().write_parquet(data)
    env = {**os.environ, "ASIN_PLATFORM__STORAGE__OPTUNA_URL": url, "OMP_NUM_THREADS": "1"}
    for name in ("a", "b"):  # two "pods": own working directories, the database in common
        (tmp_path / name).mkdir()
    first = _tune(data, 3, env, tmp_path / "a")
    out = first.communicate(timeout=120)[0]
    assert first.returncode == 0 and "(3 in this run)" in out, out
    # Both pods then ask for 8 at once: the study already holds A's 3, so together they run the 5
    # missing (one more each at most: a worker starts a trial while the other finishes the 8th).
    # That each ran fewer than 8 is the sharing; which one ran how many is the scheduler's (under
    # load one pod may start after the other has done all five: asserting both ran was a race).
    workers = [_tune(data, 8, env, tmp_path / name) for name in ("a", "b")]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ran = [int(out.rsplit("(", 1)[1].split(" in this run")[0]) for out in outputs]
    assert 5 <= sum(ran) <= 7 and all(n <= 6 for n in ran), outputs
    trials = _trials(url)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == max(numbers) + 1  # unique, none lost
    assert _complete(url) >= 8
    assert not any((tmp_path / name / "artifacts").exists() for name in ("a", "b"))  # nothing on "pod" disk

    before = _complete(url)
    victim = _tune(data, before + 40, env, tmp_path / "a")
    deadline = time.monotonic() + 90
    while _complete(url) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    at_kill = _complete(url)
    assert victim.returncode == -signal.SIGKILL and before + 3 <= at_kill < before + 10
    resumed = _tune(data, before + 10, env, tmp_path / "b")
    out = resumed.communicate(timeout=120)[0]
    assert resumed.returncode == 0, out
    assert f"({before + 10 - at_kill} in this run)" in out
    trials = _trials(url)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert _complete(url) == before + 10  # the killed worker's unfinished trial is not counted
