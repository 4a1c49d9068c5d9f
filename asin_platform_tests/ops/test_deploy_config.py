"""Every YAML file under deploy/ parses; the PostgreSQL instance profile passes Dagster's own instance
config validation; the Helm values use only the chart's documented keys, and the instance the chart
renders from them validates too and agrees with the profile."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROFILE = DEPLOY / "dagster.postgres.yaml"
VALUES = DEPLOY / "helm" / "values.yaml"

# Top-level keys of the dagster chart's values: the `properties` of helm/dagster/values.schema.json
# in dagster-io/dagster (generated from helm/dagster/schema/schema/charts/dagster/values.py,
# DagsterHelmValues), plus `concurrency`, added in chart 1.12 (subschema/concurrency.py).
CHART_TOP_LEVEL_KEYS = {
    "dagsterWebserver",
    "dagster-user-deployments",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "imagePullSecrets",
    "computeLogManager",
    "scheduler",
    "runLauncher",
    "pythonLogs",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "serviceAccount",
    "global",
    "retention",
    "additionalInstanceConfig",
    "concurrency",
}
# subschema/global_.py (Global)
GLOBAL_KEYS = {
    "postgresqlSecretName",
    "dagsterHome",
    "serviceAccountName",
    "celeryConfigSecretName",
    "dagsterInstanceConfigMap",
}
# subschema/postgresql.py (PostgreSQL)
POSTGRESQL_KEYS = {
    "image",
    "enabled",
    "postgresqlHost",
    "postgresqlUsername",
    "postgresqlPassword",
    "postgresqlDatabase",
    "postgresqlParams",
    "postgresqlScheme",
    "service",
}
# charts/dagster_user_deployments/subschema/user_deployments.py (UserDeployment)
USER_DEPLOYMENT_KEYS = {
    "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
    "deploymentNamespace", "port", "replicaCount", "env", "envConfigMaps", "envSecrets", "annotations",
    "nodeSelector", "affinity", "tolerations", "podSecurityContext", "securityContext", "resources",
    "livenessProbe", "readinessProbe", "startupProbe", "labels", "volumeMounts", "volumes",
    "schedulerName", "initContainers", "sidecarContainers", "deploymentStrategy",
}  # fmt: skip
# subschema/run_launcher.py (K8sRunLauncherConfig)
K8S_RUN_LAUNCHER_KEYS = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile", "envConfigMaps",
    "envSecrets", "envVars", "volumeMounts", "volumes", "labels", "failPodOnRunFailure", "resources",
    "schedulerName", "securityContext", "runK8sConfig",
}  # fmt: skip
# subschema/daemon.py (Daemon)
DAEMON_KEYS = {
    "enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps", "envSecrets",
    "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
    "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe", "annotations",
    "runMonitoring", "runRetries", "sensors", "schedules", "schedulerName", "volumeMounts", "volumes",
}  # fmt: skip
# subschema/concurrency.py (Concurrency, ConcurrencyPools, ConcurrencyRuns)
CONCURRENCY_KEYS = {"enabled", "pools", "runs"}
CONCURRENCY_POOL_KEYS = {"defaultLimit", "granularity", "opGranularityRunBuffer"}
CONCURRENCY_RUN_KEYS = {"maxConcurrentRuns", "tagConcurrencyLimits"}
SECRET_NAME = re.compile(r"TOKEN|KEY|PASSWORD|SECRET|WAREHOUSE_URL|WEBHOOK|PG_URL", re.I)


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    return yaml.safe_load(PROFILE.read_text())


def _validate_instance(config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Dagster's own validation of a dagster.yaml (what `DagsterInstance.get()` runs at start)."""
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://dagster:pw@db:5432/dagster")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "pw")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    validated, _ = dagster_instance_config(str(tmp_path))
    return dict(validated)


def test_every_yaml_under_deploy_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert PROFILE in files and VALUES in files
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents and all(isinstance(d, dict) for d in documents), path


def test_postgres_profile_passes_dagster_validation(profile, tmp_path, monkeypatch) -> None:
    validated = _validate_instance(profile, tmp_path, monkeypatch)
    assert validated["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    concurrency = validated["concurrency"]
    assert concurrency["runs"]["max_concurrent_runs"] > 1
    assert concurrency["pools"]["granularity"] == "run"
    assert concurrency["pools"]["default_limit"] == 1  # the upstream_api pool: one token, one fetch
    assert validated["run_retries"]["enabled"] and validated["run_retries"]["max_retries"] >= 1
    monitoring = validated["run_monitoring"]
    assert monitoring["enabled"] and monitoring["free_slots_after_run_end_seconds"] > 0
    assert validated["telemetry"] == {"enabled": False}


def test_embedded_default_stays_sqlite_with_low_concurrency(tmp_path, monkeypatch) -> None:
    embedded = yaml.safe_load((REPO / "dagster.yaml").read_text())
    validated = _validate_instance(embedded, tmp_path, monkeypatch)
    assert "storage" not in validated  # SQLite under $DAGSTER_HOME
    assert validated["concurrency"]["runs"]["max_concurrent_runs"] <= 2


def test_helm_values_use_only_documented_chart_keys(values) -> None:
    assert set(values) <= CHART_TOP_LEVEL_KEYS, set(values) - CHART_TOP_LEVEL_KEYS
    assert set(values["global"]) <= GLOBAL_KEYS
    assert set(values["postgresql"]) <= POSTGRESQL_KEYS
    assert set(values["dagsterDaemon"]) <= DAEMON_KEYS
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert set(launcher["config"]["k8sRunLauncher"]) <= K8S_RUN_LAUNCHER_KEYS
    assert set(values["concurrency"]) <= CONCURRENCY_KEYS
    assert set(values["concurrency"]["pools"]) <= CONCURRENCY_POOL_KEYS
    assert set(values["concurrency"]["runs"]) <= CONCURRENCY_RUN_KEYS
    deployments = values["dagster-user-deployments"]["deployments"]
    for deployment in deployments:
        assert set(deployment) <= USER_DEPLOYMENT_KEYS, set(deployment) - USER_DEPLOYMENT_KEYS


def test_helm_values_deploy_this_code_location_with_secrets_from_secrets(values) -> None:
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"]
    assert "asin_platform.definitions" in deployment["codeServerArgs"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]  # run pods get the same env/secrets
    assert deployment["envSecrets"], "secrets come from a Kubernetes Secret"
    env_names = [e["name"] for e in deployment["env"]]
    assert not [n for n in env_names if SECRET_NAME.search(n)], "a secret in plain values"
    # external PostgreSQL for Dagster, through psycopg2 (see deploy/dagster.postgres.yaml)
    postgresql = values["postgresql"]
    assert postgresql["enabled"] is False and postgresql["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["generatePostgresqlPasswordSecret"] is False and values["global"]["postgresqlSecretName"]
    # the chart's own monitoring/retry/queue blocks are off: additionalInstanceConfig and
    # `concurrency` say it once (two sources would render two conflicting dagster.yaml sections)
    daemon = values["dagsterDaemon"]
    assert not daemon["runCoordinator"]["enabled"]
    assert not daemon["runMonitoring"]["enabled"] and not daemon["runRetries"]["enabled"]
    assert not values["retention"]["enabled"]


def _chart_instance(values: dict[str, Any]) -> dict[str, Any]:
    """The dagster.yaml the chart renders from ``values`` (templates/configmap-instance.yaml):
    postgres storage from `postgresql`, the K8s run launcher, `concurrency` in snake_case, the
    daemon's thread settings, telemetry, then additionalInstanceConfig verbatim."""
    pg = values["postgresql"]
    pg_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg.get("postgresqlParams", {}),
        "scheme": pg["postgresqlScheme"],
    }
    conc = values["concurrency"]
    instance: dict[str, Any] = {
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": {"postgres_db": pg_db},
        },
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": {"postgres_db": pg_db},
        },
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": {"postgres_db": pg_db},
        },
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": {}},
        "concurrency": {
            "pools": {
                "default_limit": conc["pools"]["defaultLimit"],
                "granularity": conc["pools"]["granularity"],
            },
            "runs": {
                "max_concurrent_runs": conc["runs"]["maxConcurrentRuns"],
                "tag_concurrency_limits": conc["runs"]["tagConcurrencyLimits"],
            },
        },
        "sensors": {
            "use_threads": values["dagsterDaemon"]["sensors"]["useThreads"],
            "num_workers": values["dagsterDaemon"]["sensors"]["numWorkers"],
        },
        "schedules": {
            "use_threads": values["dagsterDaemon"]["schedules"]["useThreads"],
            "num_workers": values["dagsterDaemon"]["schedules"]["numWorkers"],
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    extra = values["additionalInstanceConfig"]
    assert not set(extra) & set(instance), "additionalInstanceConfig repeats a section the chart renders"
    return {**instance, **extra}


def test_chart_rendered_instance_validates_and_matches_the_profile(
    values, profile, tmp_path, monkeypatch
) -> None:
    validated = _validate_instance(_chart_instance(values), tmp_path, monkeypatch)
    # the same operational policy on one host and on Kubernetes ...
    for section in ("run_retries", "retention", "backfills", "auto_materialize", "nux"):
        assert validated[section] == profile[section], section
    assert validated["concurrency"]["pools"] == profile["concurrency"]["pools"]
    k8s, host = dict(validated["run_monitoring"]), dict(profile["run_monitoring"])
    # ... except what Kubernetes changes: pods take longer to start, and the K8s launcher can
    # resume a run whose pod died where the default launcher cannot
    for key in ("start_timeout_seconds", "max_resume_run_attempts"):
        k8s.pop(key), host.pop(key)
    assert k8s == host
    assert validated["run_monitoring"]["max_resume_run_attempts"] > 0


def test_the_validation_catches_a_misspelt_key(profile, tmp_path, monkeypatch) -> None:
    """Guards the guard: a typo in the profile is an error, not a silently ignored key."""
    from dagster._core.errors import DagsterInvalidConfigError

    broken = {**profile, "run_monitoring": {**profile["run_monitoring"], "free_slots_after_run_end": 300}}
    with pytest.raises(DagsterInvalidConfigError, match="free_slots_after_run_end"):
        _validate_instance(broken, tmp_path, monkeypatch)
