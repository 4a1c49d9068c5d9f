"""Feature drift: population stability index (PSI) of today's features against the training data.

The training side is summarised once, when the model is trained, as a *profile*: per site and
feature, the decile edges of the training values and the share of training rows in each bin
(plus the share of nulls, its own bin). The profile travels in the model card, so the daily drift
check needs neither the training rows nor the warehouse's history.

``PSI = sum_bins (actual - expected) * ln(actual / expected)`` with shares floored at
``SHARE_FLOOR`` (an empty bin would make it infinite). Reading it, by convention: < 0.1 stable,
0.1-0.25 moderate shift, > 0.25 a shift worth a look (the drift check WARNs there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

DEFAULT_BINS = 10
SHARE_FLOOR = 1e-4
PSI_WARN = 0.25


def _edges(values: np.ndarray, bins: int) -> list[float]:
    """Interior cut points: the distinct deciles of the non-null values."""
    if values.size == 0:
        return []
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return sorted({float(q) for q in qs})


def _shares(values: np.ndarray, n_nulls: int, edges: Sequence[float]) -> list[float]:
    """Share of rows per bin (-inf, e1], (e1, e2], ..., (e_last, inf), then the null share."""
    total = values.size + n_nulls
    if total == 0:
        return [0.0] * (len(edges) + 2)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return [*(counts / total).tolist(), n_nulls / total]


def _column(frame: pl.DataFrame, feature: str) -> tuple[np.ndarray, int]:
    series = frame[feature].cast(pl.Float64).fill_nan(None)
    return series.drop_nulls().to_numpy(), series.null_count()


def reference_profile(
    frame: pl.DataFrame, features: Sequence[str], *, by: str | None = "site", bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """The training distribution of each feature (per ``by`` group, e.g. per site): JSON-ready."""
    groups = frame.partition_by(by, as_dict=True) if by else {("all",): frame}
    profile: dict[str, Any] = {"bins": bins, "by": by, "groups": {}}
    for key, part in groups.items():
        name = str(key[0]) if isinstance(key, tuple) else str(key)
        entry: dict[str, Any] = {"rows": part.height, "features": {}}
        for feature in features:
            values, nulls = _column(part, feature)
            edges = _edges(values, bins)
            entry["features"][feature] = {"edges": edges, "shares": _shares(values, nulls, edges)}
        profile["groups"][name] = entry
    return profile


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = SHARE_FLOOR) -> float:
    """PSI of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(
    profile: dict[str, Any], frame: pl.DataFrame, *, group: str | None = None, warn: float = PSI_WARN
) -> pl.DataFrame:
    """PSI of every profiled feature of ``frame`` against the profile (of ``group``, e.g. a site).

    Returns ``feature, psi, status (ok | moderate | drift | missing), rows`` sorted by PSI, highest
    first. A feature absent from ``frame`` is reported as ``missing`` with a null PSI."""
    groups = profile["groups"]
    name = group if group in groups else ("all" if "all" in groups else next(iter(groups)))
    reference = groups[name]["features"]
    rows = []
    for feature, ref in reference.items():
        if feature not in frame.columns:
            rows.append((feature, None, "missing", frame.height))
            continue
        values, nulls = _column(frame, feature)
        value = psi(ref["shares"], _shares(values, nulls, ref["edges"]))
        status = "drift" if value > warn else ("moderate" if value > 0.1 else "ok")
        rows.append((feature, value, status, frame.height))
    return pl.DataFrame(
        rows,
        schema={"feature": pl.Utf8, "psi": pl.Float64, "status": pl.Utf8, "rows": pl.Int64},
        orient="row",
    ).sort("psi", descending=True, nulls_last=True)
