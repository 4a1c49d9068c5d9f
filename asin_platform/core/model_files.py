"""A trained ranker on disk: its model card, versioned directory, pointers and loading.

A saved model is a directory ``<models_dir>/<version>/`` with ``model.txt`` (LightGBM text format,
readable by any LightGBM) and ``card.json`` (features, params, data window, metrics, training
time, git commit, drift profile). ``version`` = UTC timestamp + 8 hex of the model text's hash.
``<models_dir>/latest`` holds the version predictions use; a model without a passing validation
gate (it lost to the baseline, or there was no baseline to compare with: ``promotion_refusal``) is
saved but never promoted. ``<models_dir>/last_trained`` always names the
newest model (what the promotion check and the evaluation look at). Training itself is
``core/ranker.py``; the warehouse registry over an artifact store is ``storage/registry.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

# lightgbm through core.ranker, which sets OMP_WAIT_POLICY before the library loads
from asin_platform.core.ranker import (
    LAST_TRAINED,
    LATEST,
    LightGBMError,
    TrainedRanker,
    feature_importance,
    lgb,
    lightgbm_refusal,
)


def git_commit(cwd: str | Path | None = None) -> str:
    """The repository's HEAD commit, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _metrics_json(table: pl.DataFrame) -> dict[str, dict[str, float | int | None]]:
    out: dict[str, dict[str, float | int | None]] = {}
    for row in table.iter_rows(named=True):
        entry = out.setdefault(row["ranker"], {})
        for metric in ("ndcg", "precision", "recall"):
            entry[f"{metric}@{row['k']}"] = row[metric]
        entry["queries_kept"] = row["queries_kept"]
        entry["queries_total"] = row["queries_total"]
    return out


def model_card(
    trained: TrainedRanker, *, version: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Everything needed to know what a model is and how it was made (JSON-ready)."""
    return {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_file": "model.txt",
        "objective": trained.params.get("objective"),
        "label": trained.label,
        "features": list(trained.features),
        "params": trained.params,
        # the RankerParams (settings.scale.ranker + the run's overrides) it was built from; {} when
        # trained outside build_ranker
        "levers": trained.levers,
        "best_iteration": trained.best_iteration,
        "num_trees": trained.booster.num_trees(),
        "data_window": trained.data_window,
        "rows": trained.rows,
        "queries": trained.queries,
        # a refitted model (core.ranker_levers.refit_on_validation) trained on the validation rows: its
        # validation metrics and gate are the early-stopped fit's, and "refit" says so
        "metrics": {
            "valid": _metrics_json(trained.valid_metrics),
            **({"valid_of": trained.refit["valid_metrics_of"]} if trained.refit else {}),
        },
        "gate": trained.gate(),
        "refit": trained.refit or None,
        "training_seconds": round(trained.training_seconds, 3),
        "git_commit": git_commit(Path(__file__).parent),
        "lightgbm_version": lgb.__version__,
        "feature_importance": feature_importance(trained.booster).head(50).to_dicts(),
        "drift_profile": trained.drift_profile,
        **(dict(extra) if extra else {}),
    }


def gate_figure(value: Any) -> str:
    """A validation-gate figure (a card's ``gate["model"]`` / ``gate["baseline"]``, a registry row's
    NDCG) as shown to people: four decimals, or ``n/a`` when it is missing (None: no baseline to
    compare with, or no validation split). The one formatting of these figures for log lines, CLI
    printouts and refusal reasons, so a missing one never raises after the model was registered."""
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, int | float) else str(value)


def promotion_refusal(gate: Mapping[str, Any] | None) -> str | None:
    """Why a model whose validation gate is ``gate`` (``TrainedRanker.gate()``, a card's ``"gate"``)
    may not be promoted, or None when it may: only ``gate["passed"] is True`` (it beat the baseline)
    passes. No gate, a gate with ``passed`` None (no baseline to compare with, e.g. a fit without a
    validation split) and a lost gate each give their reason.

    The rule every automatic promotion follows (``save_model``, ``storage.register_model``,
    ``assets.training.judge_candidate``): a card without a passing gate is never promoted, and an
    explicit ``promote=True`` for one is a ValueError with this reason. The one exception is a person:
    ``asin-platform model promote VERSION --reason ...`` (``storage.promote_model``) promotes any
    registered model, a deliberate override that records its reason."""
    if not gate or "passed" not in gate:
        return "validation gate: not recorded (the model was not compared with the baseline)"
    passed = gate["passed"]
    if passed is True:
        return None
    if passed is None:
        return "validation gate: no baseline to compare with"
    if passed is False:
        return (
            f"validation gate: {gate.get('metric')} {gate_figure(gate.get('model'))} <= baseline "
            f"{gate_figure(gate.get('baseline'))}"
        )
    return f"validation gate: passed is {passed!r}, not true"  # not a gate this code wrote


@dataclass(frozen=True)
class SavedModel:
    version: str
    directory: Path
    model_path: Path
    card_path: Path
    promoted: bool
    card: dict[str, Any]


def new_version(model_text: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{hashlib.sha256(model_text.encode()).hexdigest()[:8]}"


def save_model(
    trained: TrainedRanker,
    models_dir: str | Path,
    *,
    extra: Mapping[str, Any] | None = None,
    promote: bool | None = None,
) -> SavedModel:
    """Write ``<models_dir>/<version>/model.txt`` + ``card.json``; point ``latest`` at it when
    ``promote`` (default: when its validation gate passed, see ``promotion_refusal``).
    ``promote=True`` for a model without a passing gate is a ValueError naming the reason, raised
    before anything is written; ``promote=False`` saves a passing model without promoting it."""
    text = trained.booster.model_to_string(num_iteration=trained.best_iteration)
    version = new_version(text)
    directory = Path(models_dir) / version
    card = model_card(trained, version=version, extra=extra)
    refusal = promotion_refusal(card["gate"])
    if promote and refusal is not None:
        raise ValueError(f"model {version} may not be promoted: {refusal}")
    if promote is None:
        promote = refusal is None
    directory.mkdir(parents=True, exist_ok=False)
    card["promoted"] = bool(promote)
    model_path, card_path = directory / "model.txt", directory / "card.json"
    model_path.write_text(text)
    card_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    set_pointer(models_dir, LAST_TRAINED, version)
    if promote:
        set_pointer(models_dir, LATEST, version)
    return SavedModel(version, directory, model_path, card_path, bool(promote), card)


def set_pointer(models_dir: str | Path, name: str, version: str) -> None:
    """Point ``name`` (``latest`` / ``last_trained``) at ``version`` atomically (temp file + rename),
    so a reader never sees a half-written pointer."""
    pointer = Path(models_dir) / name
    tmp = pointer.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(version + "\n")
    tmp.replace(pointer)


def export_model(saved: SavedModel, output: str | Path) -> tuple[Path, Path]:
    """Copy a saved model to ``output`` (the seed's ``artifacts/lgb_rank.txt``) with its card beside
    it as ``<stem>.card.json``."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(saved.model_path, out)
    card_out = out.with_name(out.stem + ".card.json")
    shutil.copyfile(saved.card_path, card_out)
    return out, card_out


@dataclass(frozen=True)
class LoadedModel:
    booster: lgb.Booster
    card: dict[str, Any]
    version: str
    path: Path | str  # the model file, or the store URL it was read from

    @property
    def features(self) -> list[str]:
        return list(self.card.get("features") or self.booster.feature_name())


def resolve_model_path(path: str | Path, pointer_name: str = LATEST) -> Path:
    """``path`` may be a model file, a version directory, or a models directory with a pointer
    (``latest`` by default)."""
    p = Path(path)
    if p.is_dir():
        if (p / "model.txt").exists():
            return p / "model.txt"
        pointer = p / pointer_name
        if pointer.exists():
            return p / pointer.read_text().strip() / "model.txt"
        raise FileNotFoundError(
            f"{p} holds neither model.txt nor a '{pointer_name}' pointer: train a model first"
        )
    if not p.exists():
        raise FileNotFoundError(f"no model at {p}")
    return p


class ModelFileError(ValueError):
    """A file that is not a model LightGBM can load (not its text format, cut short, damaged), or
    whose card is not JSON. ``str()`` says what is wrong, in one line."""


_CUT_SHORT = "a LightGBM model cut short ({}: an incomplete copy)"


def _line(data: bytes, text: bytes, *, prefix: bool = False) -> re.Match[bytes] | None:
    """The first line of ``data`` that is ``text`` (starts with it, ``prefix``)."""
    return re.search(rb"^" + re.escape(text) + (rb"[^\r\n]*" if prefix else rb"") + rb"\r?$", data, re.M)


def model_text_problem(data: bytes) -> str | None:
    """What keeps ``data`` from being a LightGBM model LightGBM can load safely, or None.

    LightGBM's loader trusts the file: cut short inside a tree or a parameter line it reads past the
    end of the text (the process aborts or segfaults, measured with LightGBM 4.7), and it finds its
    trees where the ``tree_sizes`` header says they are. So before LightGBM sees it: the ``tree``
    line LightGBM writes first, the ``end of trees`` line, every tree where ``tree_sizes`` puts it,
    ``end of parameters`` after ``parameters:`` and the last line's ``pandas_categorical`` JSON
    (what LightGBM's Python package writes last)."""
    if not data.strip():
        return "an empty file"
    if data.split(b"\n", 1)[0].rstrip(b"\r") != b"tree":
        return "not a LightGBM model (its first line is not LightGBM's `tree`)"
    end_of_trees = _line(data, b"end of trees")
    if end_of_trees is None:
        return _CUT_SHORT.format("no `end of trees` line")
    sizes = _line(data, b"tree_sizes=", prefix=True)
    first_tree = _line(data, b"Tree=", prefix=True)
    if sizes is not None and first_tree is not None:
        try:
            lengths = [int(n) for n in sizes.group().split(b"=", 1)[1].split()]
        except ValueError:
            return "a damaged LightGBM model (its `tree_sizes` line is not a list of sizes)"
        at = first_tree.start()
        for length in lengths:
            if not data.startswith(b"Tree=", at):
                return "a damaged LightGBM model (a tree is not where its `tree_sizes` line puts it)"
            at += length
        if not data[at:].lstrip(b"\r\n").startswith(b"end of trees"):
            return "a damaged LightGBM model (its trees do not end where its `tree_sizes` line says)"
    parameters = _line(data, b"parameters:")
    if parameters is not None:
        end = _line(data, b"end of parameters")
        if end is None:
            return _CUT_SHORT.format("no `end of parameters` line")
        # LightGBM parses each as ``[name: value]``: a broken one is read past its end
        for line in data[parameters.end() : end.start()].splitlines():
            if line.strip() and not re.fullmatch(rb"\[[^:\[\]]+: [^\r\n]*\]\s*", line):
                return "a damaged LightGBM model (a line of its parameters is not `[name: value]`)"
    last = data.rstrip().rsplit(b"\n", 1)[-1].strip()
    if last.startswith(b"pandas_categorical:"):
        try:
            json.loads(last.split(b":", 1)[1])
        except ValueError:
            return _CUT_SHORT.format("its last line, `pandas_categorical`, is not JSON")
    try:
        data.decode()
    except UnicodeDecodeError:
        return "not a LightGBM model (not UTF-8 text)"
    return None


def booster_of(data: bytes) -> lgb.Booster:
    """The booster of a model file's bytes (``model.txt``, a store object). A file that is not a
    model LightGBM can load is a ``ModelFileError`` saying why (``model_text_problem``, or LightGBM's
    refusal as ``core.ranker.lightgbm_refusal`` reads it): never handed to LightGBM when it would
    read past its end."""
    problem = model_text_problem(data)
    if problem is not None:
        raise ModelFileError(problem)
    try:
        return lgb.Booster(model_str=data.decode())
    except LightGBMError as exc:
        raise ModelFileError(f"LightGBM cannot load it ({lightgbm_refusal(exc)})") from exc


def card_of(data: bytes, where: str) -> dict[str, Any]:
    """A model card's JSON object; anything else is a ``ModelFileError`` naming ``where``."""
    try:
        card = json.loads(data)
    except ValueError as exc:
        raise ModelFileError(f"its card {where} is not JSON ({exc})") from None
    if not isinstance(card, dict):
        raise ModelFileError(f"its card {where} is not a JSON object")
    return card


def load_model(path: str | Path, pointer_name: str = LATEST) -> LoadedModel:
    """The booster and its card (``card.json`` beside ``model.txt``, or ``<stem>.card.json``).
    A model file LightGBM cannot load, or a card that is not JSON, is a ``ModelFileError``."""
    model_path = resolve_model_path(path, pointer_name)
    booster = booster_of(model_path.read_bytes())
    card: dict[str, Any] = {}
    # a version directory's model.txt has card.json; an exported lgb_rank.txt has lgb_rank.card.json
    candidate = model_path.with_name(
        "card.json" if model_path.name == "model.txt" else model_path.stem + ".card.json"
    )
    if candidate.exists():
        card = card_of(candidate.read_bytes(), str(candidate))
    version = str(card.get("version") or model_path.stem)
    return LoadedModel(booster, card, version, model_path)
