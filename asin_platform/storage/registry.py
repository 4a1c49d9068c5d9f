"""The model registry: model files in the artifact store, found through the warehouse.

A run on one machine trains, a run on another predicts: the weekly training pod's disk is gone by
the time the daily prediction pod starts. So a trained model is written to the artifact store
(``<artifacts>/models/<version>/model.txt`` + ``card.json``, ``core.ranker``'s layout) and registered
as one row of ``model_registry`` (schemas.MODEL_REGISTRY) in the warehouse every run shares. The
table decides which model is promoted; prediction loads that row's ``artifact_url``, wherever the
store is.

Promotion is one transaction (the old row demoted, the new one promoted together), so readers see
exactly one promoted model; on PostgreSQL a partial unique index refuses a second promoted row even
from two promotions racing (the later one fails and changes nothing).

For readers of a models *folder* (``batch-predict --model artifacts/models``, ``core.model_files.load_model``)
the store also keeps the ``latest`` / ``last_trained`` pointer objects, written after the commit: on
local disk the folder stays exactly what ``core.model_files.save_model`` makes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Literal

import polars as pl

from asin_platform.core.backtest import PromotionVerdict
from asin_platform.core.model_files import (
    LoadedModel,
    booster_of,
    card_of,
    model_card,
    new_version,
    promotion_refusal,
)
from asin_platform.core.ranker import LAST_TRAINED, LATEST, TrainedRanker
from asin_platform.resources.warehouse import Warehouse, WarehouseTx
from asin_platform.schemas import MODEL_REGISTRY
from asin_platform.storage.store import ArtifactStore, exists, read_bytes, shown, write_bytes

MODELS = "models"
Which = Literal["promoted", "newest"]


class NoModelError(LookupError):
    """The registry holds no model of the kind asked for (train one first)."""


@dataclass(frozen=True)
class RegisteredModel:
    version: str
    artifact_url: str  # the version's directory in the store
    card: dict[str, Any]
    promoted: bool

    @property
    def model_url(self) -> str:
        return f"{self.artifact_url}/model.txt"

    @property
    def shown_url(self) -> str:
        """The model file as people and metadata see it (a local path, or the object's URL)."""
        return shown(self.model_url)


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def registry_row(card: dict[str, Any], artifact_url: str, *, created_at: datetime) -> pl.DataFrame:
    """The ``model_registry`` row of a model card (not promoted: promotion is its own statement)."""
    train = (card.get("data_window") or {}).get("train") or [None, None]
    gate = card.get("gate") or {}
    verdict = card.get("verdict") or {}
    return MODEL_REGISTRY.conform(
        pl.DataFrame(
            [
                {
                    "version": card["version"],
                    "created_at": created_at,
                    "train_start": _day(train[0]),
                    "train_end": _day(train[1]),
                    "valid_ndcg_20": gate.get("model"),
                    "baseline_valid_ndcg_20": gate.get("baseline"),
                    "gate_passed": gate.get("passed"),
                    "metrics": json.dumps(card.get("metrics") or {}, default=str),
                    "card": json.dumps(card, default=str),
                    "artifact_url": artifact_url,
                    "promoted": False,
                    "promoted_at": None,
                    "verdict": verdict.get("status"),
                    "verdict_reason": verdict.get("reason"),
                    "backtest_ndcg_20": verdict.get("candidate_ndcg_20"),
                    "compared_version": verdict.get("current"),
                    "compared_backtest_ndcg_20": verdict.get("current_ndcg_20"),
                    "backtest_folds": json.dumps(verdict["folds"], default=str)
                    if verdict.get("folds")
                    else None,
                }
            ],
            schema_overrides={
                "created_at": pl.Datetime("us", "UTC"),
                "promoted_at": pl.Datetime("us", "UTC"),
            },
        )
    )


def register_model(
    warehouse: Warehouse,
    store: ArtifactStore,
    trained: TrainedRanker,
    *,
    extra: dict[str, Any] | None = None,
    promote: bool | None = None,
    verdict: PromotionVerdict | None = None,
    models: str = MODELS,
) -> RegisteredModel:
    """Write the model and its card to ``store`` (under the key prefix ``models``) and register it;
    promote it when ``promote`` (default: as ``verdict`` says, without one when it beat the
    baseline on validation), in the same transaction as the registration. The verdict (why it was
    promoted or refused, both models' figures) goes into the card and row.

    A model without a passing validation gate (``core.model_files.promotion_refusal``: it lost to the
    baseline, or there was no baseline to compare with) is never promoted: it is registered as
    ``rejected`` with that reason (over an accepted ``verdict`` or none), and ``promote=True`` for it
    is a ValueError naming the reason, raised before anything is written. ``promote_model`` (the
    ``asin-platform model promote`` command) stays a person's deliberate override."""
    text = trained.booster.model_to_string(num_iteration=trained.best_iteration)
    version = new_version(text)
    card = model_card(trained, version=version, extra=extra)
    refusal = promotion_refusal(card["gate"])
    if refusal is not None:
        if promote:
            raise ValueError(f"model {version} may not be promoted: {refusal}")
        if verdict is None or verdict.accepted:
            # the folds' figures, if any, stay: the gate refuses it whatever they say
            verdict = (
                PromotionVerdict(False, refusal)
                if verdict is None
                else replace(verdict, accepted=False, reason=refusal)
            )
    if verdict is not None:
        card["verdict"] = verdict_json(verdict)
    if promote is None:
        promote = verdict.accepted if verdict is not None else True  # no verdict, a passing gate
    card["promoted"] = bool(promote)
    directory = store.url(_key(models, version))
    # the files first: a registered row always names files that exist
    write_bytes(f"{directory}/model.txt", text.encode())
    write_bytes(f"{directory}/card.json", (json.dumps(card, indent=2, default=str) + "\n").encode())
    with warehouse.transaction() as tx:
        # the same model text trained again within a second has the same version: keep its row
        # (and its promotion) rather than demote it by rewriting
        known = tx.query(f'SELECT version FROM "{MODEL_REGISTRY.name}" WHERE version = ?', [version])
        if known.is_empty():
            tx.upsert(MODEL_REGISTRY.name, registry_row(card, directory, created_at=datetime.now(UTC)))
        if promote:
            _promote(tx, version)
    store.write_text(_key(models, LAST_TRAINED), version + "\n")
    if promote:
        store.write_text(_key(models, LATEST), version + "\n")
    return RegisteredModel(version, directory, card, bool(promote))


def _key(models: str, name: str) -> str:
    return f"{models}/{name}" if models else name


def verdict_json(verdict: PromotionVerdict) -> dict[str, Any]:
    """The verdict as the card and the registry row keep it."""
    return {
        "status": verdict.status,
        "reason": verdict.reason,
        "candidate_ndcg_20": verdict.candidate_ndcg,
        "current": verdict.current,
        "current_ndcg_20": verdict.current_ndcg,
        "folds": json.loads(verdict.folds.write_json()) if verdict.folds is not None else None,
    }


def _promote(tx: WarehouseTx, version: str) -> None:
    tx.execute(
        f'UPDATE "{MODEL_REGISTRY.name}" SET promoted = FALSE WHERE promoted AND version <> ?', [version]
    )
    tx.execute(
        f'UPDATE "{MODEL_REGISTRY.name}" SET promoted = TRUE, promoted_at = CURRENT_TIMESTAMP WHERE version = ?',
        [version],
    )


def promote_model(
    warehouse: Warehouse, version: str, store: ArtifactStore | None = None, *, reason: str | None = None
) -> None:
    """Make ``version`` the one promoted model (one transaction); LookupError when it is unknown.
    With ``reason`` (a promotion by hand) its verdict becomes 'accepted' for that reason.

    Any registered model, whatever its gate or verdict: this is ``asin-platform model promote``, a
    person's deliberate override of ``register_model``'s rule (``core.model_files.promotion_refusal``)."""
    with warehouse.transaction() as tx:
        known = tx.query(f'SELECT version FROM "{MODEL_REGISTRY.name}" WHERE version = ?', [version])
        if known.is_empty():
            raise NoModelError(f"no model {version!r} in the registry: see `model_registry` for the versions")
        _promote(tx, version)
        if reason is not None:
            tx.execute(
                f'UPDATE "{MODEL_REGISTRY.name}" SET verdict = ?, verdict_reason = ? WHERE version = ?',
                ["accepted", reason, version],
            )
    if store is not None:
        store.write_text(f"{MODELS}/{LATEST}", version + "\n")


def registry(warehouse: Warehouse) -> pl.DataFrame:
    """Every registered model, newest first."""
    return warehouse.read(MODEL_REGISTRY.name).sort(["created_at", "version"], descending=True)


def find_model(warehouse: Warehouse, which: Which = "promoted") -> RegisteredModel:
    """The promoted model (what predictions use) or the newest one (what the evaluation and the
    promotion check look at); NoModelError when there is none."""
    rows = registry(warehouse)
    if which == "promoted":
        rows = rows.filter(pl.col("promoted"))
    if rows.is_empty():
        kind = "promoted model" if which == "promoted" else "registered model"
        raise NoModelError(f"the model registry holds no {kind}: materialise ranker_model first")
    row = rows.row(0, named=True)
    return RegisteredModel(
        row["version"], row["artifact_url"], json.loads(row["card"]), bool(row["promoted"])
    )


def load_registered(warehouse: Warehouse, which: Which = "promoted") -> LoadedModel:
    """The booster and card of the registry's promoted (or newest) model, read from its store URL."""
    found = find_model(warehouse, which)
    booster = booster_of(read_bytes(found.model_url))  # a damaged object: ModelFileError, not a crash
    return LoadedModel(booster, found.card, found.version, found.model_url)


def load_url(url: str) -> LoadedModel:
    """A model from a store URL: a version directory (``.../models/<version>``: model.txt + card.json)
    or a model file (its card, if any, is ``card.json`` beside it)."""
    url = url.rstrip("/")
    model_url = url if url.endswith(".txt") else f"{url}/model.txt"
    booster = booster_of(read_bytes(model_url))
    card_url = f"{model_url.rsplit('/', 1)[0]}/card.json"
    card = card_of(read_bytes(card_url), shown(card_url)) if exists(card_url) else {}
    return LoadedModel(booster, card, str(card.get("version") or model_url.rsplit("/", 2)[-2]), model_url)
