"""Secrets stay out of the UI (issue 16): after a demo run with the API token, the Keepa key, a webhook
URL with a secret path and query, and a warehouse password all set, nothing the webserver shows
through GraphQL contains any of them: not the resources' configuration, not a run's config or tags,
not a materialisation's or a check's metadata, not an event-log message, not a step's captured
stdout/stderr, not the instance info.

The secrets are random per session and are the only ones the simulator and the warehouse accept, so
the run succeeding proves they were in use (ui_harness.py). Each section is also checked for what it
must show (the env var names in place of the values, the runs' partition tags, the row counts), so
an empty answer cannot pass for a clean one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from asin_platform_tests.ops.ui_harness import INGEST_AND_SCORE, SecretDemo, Webserver, webserver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Every metadata entry type that carries text (the others hold numbers, booleans or keys).
METADATA = """fragment shown on MetadataEntry {
  label description
  ... on TextMetadataEntry { text }
  ... on JsonMetadataEntry { jsonString }
  ... on MarkdownMetadataEntry { mdStr }
  ... on PathMetadataEntry { path }
  ... on NotebookMetadataEntry { path }
  ... on UrlMetadataEntry { url }
  ... on TableMetadataEntry { table { records } }
  ... on TableSchemaMetadataEntry { schema { columns { name description } } }
  ... on IntMetadataEntry { intRepr }
  ... on FloatMetadataEntry { floatRepr }
}"""
RESOURCES = """{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
  ... on RepositoryLocation { repositories { name allTopLevelResourceDetails {
    name description resourceType configFields { name description defaultValueAsJson }
    configuredValues { key value type }
    nestedResources { name resource { name configuredValues { key value type } } } } } } } } } } }"""
RUNS = """{ runsOrError { ... on Runs { results {
  runId status runConfigYaml tags { key value } } } } }"""
EVENTS = (
    """query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events {
  __typename
  ... on MessageEvent { message }
  ... on MaterializationEvent { assetKey { path } partition metadataEntries { ...shown } }
  ... on ObservationEvent { metadataEntries { ...shown } }
  ... on AssetCheckEvaluationEvent { evaluation { checkName metadataEntries { ...shown } } }
  ... on ExecutionStepFailureEvent { error { message stack } }
  ... on RunFailureEvent { pipelineRunError: error { message stack } }
  ... on LogsCapturedEvent { fileKey }
} } } }
"""
    + METADATA
)
# A step's raw stdout/stderr, as the run page's stdout/stderr tabs show them.
CAPTURED = """query($runId: ID!, $fileKey: String!) { runOrError(runId: $runId) {
  ... on Run { capturedLogs(fileKey: $fileKey) { stdout stderr } } } }"""
ASSETS = (
    """{ assetNodes { assetKey { path } description metadataEntries { ...shown }
  assetMaterializations(limit: 20) { partition tags { key value } metadataEntries { ...shown } } } }
"""
    + METADATA
)
INSTANCE = "{ instance { info } }"


@pytest.fixture(scope="module")
def ui(secret_demo: SecretDemo) -> Iterator[Webserver]:
    with webserver(secret_demo) as server:
        yield server


@pytest.fixture(scope="module")
def shown(ui: Webserver, secret_demo: SecretDemo) -> dict[str, Any]:
    """What the UI shows, by section, as GraphQL returns it."""
    events = {run_id: ui.gql(EVENTS, {"runId": run_id}) for run_id in secret_demo.run_ids}
    captured = [
        ui.gql(CAPTURED, {"runId": run_id, "fileKey": event["fileKey"]})["runOrError"]["capturedLogs"]
        for run_id, answer in events.items()
        for event in answer["logsForRun"]["events"]
        if event["__typename"] == "LogsCapturedEvent"
    ]
    return {
        "resources": ui.gql(RESOURCES),
        "runs": ui.gql(RUNS),
        "events": events,
        "compute logs": captured,
        "assets": ui.gql(ASSETS),
        "instance": ui.gql(INSTANCE),
    }


def test_the_run_used_every_secret(secret_demo: SecretDemo) -> None:
    """The simulator accepts only this token and this Keepa key, the warehouse only this role."""
    assert len(secret_demo.run_ids) == 4  # 2 sites x (ingest..score, export)
    assert secret_demo.mart_rows() > 0


@pytest.mark.parametrize("section", ["resources", "runs", "events", "compute logs", "assets", "instance"])
def test_no_secret_in_what_the_ui_shows(shown: dict[str, Any], secret_demo: SecretDemo, section: str) -> None:
    text = json.dumps(shown[section])
    leaked = [name for name, value in secret_demo.secrets.named().items() if value in text]
    assert not leaked, f"{', '.join(leaked)} shown in the UI's {section}"


def test_resources_show_where_secrets_come_from_not_the_values(shown: dict[str, Any]) -> None:
    [entry] = shown["resources"]["workspaceOrError"]["locationEntries"]
    [repository] = entry["locationOrLoadError"]["repositories"]
    resources = {r["name"]: r for r in repository["allTopLevelResourceDetails"]}
    configured = {
        name: {v["key"]: (v["value"], v["type"]) for v in r["configuredValues"]}
        for name, r in resources.items()
    }
    assert configured["upstream"]["token"] == ("ASIN_PLATFORM_API_TOKEN", "ENV_VAR")
    assert configured["warehouse"]["url"] == ("ASIN_PLATFORM_WAREHOUSE_URL", "ENV_VAR")
    assert configured["keepa"]["api_key"] == ("KEEPA_API_KEY", "ENV_VAR")


def test_sections_are_not_empty(shown: dict[str, Any], secret_demo: SecretDemo) -> None:
    """Guards the guard: every section holds what the UI shows for these runs."""
    runs = shown["runs"]["runsOrError"]["results"]
    assert sorted(r["runId"] for r in runs) == sorted(secret_demo.run_ids)
    assert all(r["status"] == "SUCCESS" for r in runs)
    assert any(t["key"] == "dagster/asset_partition_range_start" for r in runs for t in r["tags"])
    events = json.dumps(shown["events"])
    for key in INGEST_AND_SCORE:
        assert f'"path": ["{key}"]' in events, key
    assert "MaterializationEvent" in events and "AssetCheckEvaluationEvent" in events
    # every run captured its steps' output, the runs' own log lines among it
    assert len(shown["compute logs"]) >= len(runs)
    assert any("raw_payloads" in (c["stderr"] or "") for c in shown["compute logs"])
    assets = {tuple(a["assetKey"]["path"]): a for a in shown["assets"]["assetNodes"]}
    assert assets[("top_candidates",)]["assetMaterializations"], "the export's materialisation is shown"
    assert "run_storage: SqliteRunStorage" in shown["instance"]["instance"]["info"]  # the instance config


def test_the_operators_webserver_grants_what_the_read_only_one_refuses(ui: Webserver) -> None:
    """The other side of test_readonly_webserver.py: the same permissions, all granted here."""
    permissions = ui.gql("{ permissions { permission value } }")["permissions"]
    granted = {p["permission"]: p["value"] for p in permissions}
    assert (
        granted["launch_pipeline_execution"]
        and granted["launch_partition_backfill"]
        and granted["wipe_assets"]
    )
    # ... and every other one, bar a Dagster+ permission the open-source webserver never grants
    assert {name for name, value in granted.items() if not value} <= {"edit_app_managed_components"}
