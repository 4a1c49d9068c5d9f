"""Every YAML file under deploy/ parses; the PostgreSQL instance profile passes Dagster's own instance
config validation; the Helm values use only the chart's documented keys, and the instance the chart
renders from them validates too and agrees with the profile. Who may do what (issue 16): both UIs are
served over TLS behind an authenticating proxy, the analysts' one read-only, and no values file
inlines a secret (only references to Kubernetes Secrets)."""

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
# subschema/webserver.py (Webserver)
WEBSERVER_KEYS = {
    "replicaCount", "image", "nameOverride", "pathPrefix", "service", "workspace", "env", "envConfigMaps",
    "envSecrets", "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
    "securityContext", "resources", "readinessProbe", "livenessProbe", "startupProbe", "annotations",
    "enableReadOnly", "dbStatementTimeout", "dbPoolRecycle", "logLevel", "schedulerName", "volumeMounts",
    "volumes",
}  # fmt: skip
# subschema/ingress.py (Ingress, WebserverIngressConfiguration, IngressTLSConfiguration), plus
# `ingressClassName`, which templates/ingress.yaml reads (the Ingress model allows extra keys).
INGRESS_KEYS = {
    "enabled", "apiVersion", "labels", "annotations", "flower", "dagsterWebserver", "readOnlyDagsterWebserver",
    "ingressClassName",
}  # fmt: skip
WEBSERVER_INGRESS_KEYS = {"host", "path", "pathType", "tls", "precedingPaths", "succeedingPaths"}
INGRESS_TLS_KEYS = {"enabled", "secretName"}
# subschema/compute_log_manager.py (ComputeLogManager, S3ComputeLogManager)
COMPUTE_LOG_MANAGER_KEYS = {"type", "config"}
S3_COMPUTE_LOG_KEYS = {
    "bucket", "localDir", "prefix", "useSsl", "verify", "verifyCertPath", "endpointUrl", "skipEmptyFiles",
    "uploadInterval", "uploadExtraArgs", "showUrlOnly", "region",
}  # fmt: skip
SECRET_NAME = re.compile(r"TOKEN|KEY|PASSWORD|SECRET|WAREHOUSE_URL|WEBHOOK|PG_URL", re.I)


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


OAUTH2_PROXY = {
    "operators": DEPLOY / "helm" / "oauth2-proxy-operators.yaml",
    "analysts": DEPLOY / "helm" / "oauth2-proxy-analysts.yaml",
}


@pytest.fixture(scope="module")
def proxies() -> dict[str, dict[str, Any]]:
    return {name: yaml.safe_load(path.read_text()) for name, path in OAUTH2_PROXY.items()}


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
    assert set(values["dagsterWebserver"]) <= WEBSERVER_KEYS, set(values["dagsterWebserver"]) - WEBSERVER_KEYS
    ingress = values["ingress"]
    assert set(ingress) <= INGRESS_KEYS, set(ingress) - INGRESS_KEYS
    for ui in ("dagsterWebserver", "readOnlyDagsterWebserver"):
        assert set(ingress[ui]) <= WEBSERVER_INGRESS_KEYS, (ui, set(ingress[ui]) - WEBSERVER_INGRESS_KEYS)
        assert set(ingress[ui]["tls"]) <= INGRESS_TLS_KEYS
    logs = values["computeLogManager"]
    assert set(logs) <= COMPUTE_LOG_MANAGER_KEYS and set(logs["config"]) == {"s3ComputeLogManager"}
    assert set(logs["config"]["s3ComputeLogManager"]) <= S3_COMPUTE_LOG_KEYS


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
        "compute_logs": _compute_logs(values["computeLogManager"]),
    }
    extra = values["additionalInstanceConfig"]
    assert not set(extra) & set(instance), "additionalInstanceConfig repeats a section the chart renders"
    return {**instance, **extra}


def _compute_logs(manager: dict[str, Any]) -> dict[str, Any]:
    """templates/helpers/instance/_compute-log-manager.tpl for S3: the camelCase keys in snake_case."""
    assert manager["type"] == "S3ComputeLogManager"
    config = manager["config"]["s3ComputeLogManager"]
    return {
        "module": "dagster_aws.s3.compute_log_manager",
        "class": "S3ComputeLogManager",
        "config": {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): value for key, value in config.items()},
    }


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
    # a run pod's stdout/stderr outlive the pod (issue 15): object storage, uploaded while it runs
    logs = validated["compute_logs"]
    assert logs["class"] == "S3ComputeLogManager" and logs["config"]["bucket"]
    assert logs["config"]["upload_interval"] > 0


def test_the_validation_catches_a_misspelt_key(profile, tmp_path, monkeypatch) -> None:
    """Guards the guard: a typo in the profile is an error, not a silently ignored key."""
    from dagster._core.errors import DagsterInvalidConfigError

    broken = {**profile, "run_monitoring": {**profile["run_monitoring"], "free_slots_after_run_end": 300}}
    with pytest.raises(DagsterInvalidConfigError, match="free_slots_after_run_end"):
        _validate_instance(broken, tmp_path, monkeypatch)


# ------------------------------------------------------------------------ who may do what (issue 16)

AUTH_URL = "nginx.ingress.kubernetes.io/auth-url"
AUTH_SIGNIN = "nginx.ingress.kubernetes.io/auth-signin"
UIS = {"operators": "dagsterWebserver", "analysts": "readOnlyDagsterWebserver"}


def _allowed_groups(proxy: dict[str, Any]) -> list[str]:
    match = re.search(r"^allowed_groups = (\[.*\])$", proxy["config"]["configFile"], re.M)
    assert match, "oauth2-proxy admits everyone who can sign in"
    return json.loads(match.group(1))


def test_both_uis_are_served_over_tls_behind_the_authenticating_proxy(values, proxies) -> None:
    ingress = values["ingress"]
    assert ingress["enabled"] and ingress["ingressClassName"] == "nginx"
    notes = ingress["annotations"]
    assert notes["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    assert notes["cert-manager.io/cluster-issuer"]
    # every request is checked by the oauth2-proxy of the host it was sent to
    auth = urlsplit(notes[AUTH_URL])
    assert (auth.scheme, auth.netloc, auth.path) == ("https", "$host", "/oauth2/auth")
    assert notes[AUTH_SIGNIN] == "https://$host/oauth2/start?rd=$escaped_request_uri"
    hosts = {audience: ingress[ui]["host"] for audience, ui in UIS.items()}
    assert len(set(hosts.values())) == 2
    for audience, ui in UIS.items():
        tls = ingress[ui]["tls"]
        assert tls["enabled"] and tls["secretName"], ui
        proxy, host = proxies[audience], hosts[audience]
        # the proxy answers /oauth2 on the UI's own host, over the same certificate
        assert proxy["ingress"]["enabled"] and proxy["ingress"]["path"] == "/oauth2"
        assert proxy["ingress"]["className"] == ingress["ingressClassName"]
        assert proxy["ingress"]["hosts"] == [host]
        assert proxy["ingress"]["tls"] == [{"secretName": tls["secretName"], "hosts": [host]}]
        assert f'redirect_url = "https://{host}/oauth2/callback"' in proxy["config"]["configFile"]
        assert "set_xauthrequest = true" in proxy["config"]["configFile"]  # the auth-response-headers
        assert proxy["config"]["existingSecret"], "client and cookie secrets come from a Secret"
    # the full-rights UI admits the operators alone; analysts reach only the read-only one
    assert _allowed_groups(proxies["operators"]) == ["asin-operators"]
    assert set(_allowed_groups(proxies["analysts"])) == {"asin-analysts", "asin-operators"}
    assert proxies["operators"]["config"]["cookieName"] != proxies["analysts"]["config"]["cookieName"]


def test_the_read_only_webserver_is_enabled(values) -> None:
    webserver = values["dagsterWebserver"]
    assert webserver["enableReadOnly"] is True  # the chart's second Deployment, `--read-only`
    assert values["ingress"]["readOnlyDagsterWebserver"]["host"]
    # the webservers run no asset: they get the compute logs' store, not the platform's secrets
    assert [s["name"] for s in webserver["envSecrets"]] == ["asin-object-storage"]


def test_the_image_carries_the_instance_plugins_the_values_name(values) -> None:
    """Run pods load the instance: K8sRunLauncher (dagster-k8s) and S3ComputeLogManager (dagster-aws),
    pinned with the Dagster family of pyproject.toml."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    [pin] = re.findall(r'"dagster-postgres==([\d.]+)"', (REPO / "pyproject.toml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher" and f'"dagster-k8s=={pin}"' in dockerfile
    assert (
        values["computeLogManager"]["type"] == "S3ComputeLogManager" and f'"dagster-aws=={pin}"' in dockerfile
    )
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert {"name": "asin-object-storage"} in deployment["envSecrets"]  # run pods write the logs


def test_run_pods_keep_models_and_exports_in_object_storage(values) -> None:
    """Issue 15: the env the run pods get yields settings whose artifact and export stores are
    object storage (a pod's disk dies with it), with the store's credentials from a Secret."""
    from asin_platform.settings import load_settings
    from asin_platform.storage import artifacts_store, exports_store

    [deployment] = values["dagster-user-deployments"]["deployments"]
    environ = {e["name"]: e["value"] for e in deployment["env"] if e["name"].startswith("ASIN_PLATFORM__")}
    settings = load_settings(path=REPO / "config" / "settings.yaml.example", environ=environ)
    assert not artifacts_store(settings).is_local and not exports_store(settings).is_local
    assert artifacts_store(settings).root.startswith("s3://") and exports_store(settings).root.startswith(
        "s3://"
    )
    assert {"name": "asin-object-storage"} in deployment["envSecrets"]
    assert (
        '"s3fs' in (REPO / "pyproject.toml").read_text()
    )  # the image's `pip install .` brings the S3 backend


# Keys that name a Kubernetes Secret (a reference), never hold a secret value.
SECRET_REFERENCE_KEYS = {"existingSecret", "envSecrets", "postgresqlSecretName", "secretName", "secretKeyRef"}
SECRET_KEY = re.compile(r"password|secret|token|api_?key|credential|private", re.I)
CREDENTIAL_TEXT = [
    re.compile(r"://[^/\s:@]+:[^/\s@]+@"),  # a URL with user:password@
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # an AWS access key id
    re.compile(r"^\s*(client_secret|cookie_secret|password|token)\s*=", re.I | re.M),  # oauth2-proxy cfg
]


def inlined_secrets(node: Any, path: str = "") -> list[str]:
    """Where ``node`` (parsed YAML) holds a secret value instead of a reference to a Secret."""
    found: list[str] = []
    if isinstance(node, dict):
        if "name" in node and "value" in node and SECRET_NAME.search(str(node["name"])):
            found.append(f"{path}: env {node['name']} has an inline value (use a Secret)")
        for key, value in node.items():
            where = f"{path}.{key}"
            named_secret = SECRET_KEY.search(str(key)) and key not in SECRET_REFERENCE_KEYS
            if named_secret and not isinstance(value, bool):  # generate*Secret: false is a switch
                found.append(f"{where}: a secret value in a values file")
            found += inlined_secrets(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += inlined_secrets(item, f"{path}[{i}]")
    elif isinstance(node, str) and any(p.search(node) for p in CREDENTIAL_TEXT):
        found.append(f"{path}: text that holds a credential")
    return found


def test_no_values_file_inlines_a_secret() -> None:
    files = sorted((DEPLOY / "helm").glob("*.yaml"))
    assert VALUES in files and set(OAUTH2_PROXY.values()) <= set(files)
    for path in files:
        assert not inlined_secrets(yaml.safe_load(path.read_text())), path.name


def test_the_secret_scan_catches_inlined_secrets(values, proxies) -> None:
    """Guards the guard: each way a secret could be inlined is found."""
    leaky = yaml.safe_load(yaml.safe_dump(values))
    leaky["postgresql"]["postgresqlPassword"] = "hunter2"
    [deployment] = leaky["dagster-user-deployments"]["deployments"]
    deployment["env"].append({"name": "ASIN_PLATFORM_API_TOKEN", "value": "tok"})
    deployment["env"].append({"name": "ASIN_PLATFORM__NOTE", "value": "postgresql://asin:pw@db:5432/asin"})
    proxy = yaml.safe_load(yaml.safe_dump(proxies["operators"]))
    proxy["config"]["configFile"] += '\nclient_secret = "abc"'
    proxy["config"]["cookieSecret"] = "abc"
    found = inlined_secrets(leaky) + inlined_secrets(proxy)
    assert len(found) == 5, found
