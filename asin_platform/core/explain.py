"""Why a product is on the list: each prediction's top feature contributions.

Two methods, both additive: a row's contributions plus the model's expected value (its mean raw
score) add up to its raw score exactly, and for a lambdarank model the raw score *is* the model
score, so a contribution reads "this feature moved the product's score by c".

- ``EXACT``: LightGBM's ``pred_contrib=True``, TreeSHAP: exact Shapley values, one per feature plus
  the expected value in the last column. ~1 ms of CPU a row, so kept for the rows people read.
- ``PATH``: path attribution (``PathAttribution``, Saabas' "tree interpreter"): each split on the
  row's root-to-leaf path credits its feature with the change of the node value it causes. A table
  lookup per tree from the row's leaves, ~15 us of CPU a row, so every other row gets reasons too. Same
  expected value as TreeSHAP; it credits only the features on the row's paths and favours the
  splits near the root, so its ranking of features can differ from TreeSHAP's.

A prediction keeps its ``top`` contributions by absolute size as compact JSON (``reasons``)::

    [{"f": "bsr_log_slope_7d", "v": -0.042, "c": 0.31}, ...]      f = feature, v = value, c = contribution

with ``"m": "path"`` in each entry computed by path attribution (an entry without ``m`` is TreeSHAP,
as every row written before path attribution existed), and as text for people (``reasons_text``, the
same for both methods): ``"BSR 7-day log slope -0.042 (+0.31), review velocity 7d 3.1/day (+0.12)"``:
the feature's value, and in brackets how much it moved the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import lightgbm as lgb

DEFAULT_TOP = 3  # reasons kept per prediction: what fits a spreadsheet cell and a reader's glance

Method = Literal["shap", "path"]
EXACT: Method = "shap"  # TreeSHAP, LightGBM's pred_contrib: exact Shapley values
PATH: Method = "path"  # path attribution (PathAttribution): a lookup per tree, for every other row
CHUNK_ROWS = 65_536  # rows explained at a time (bounds the contribution matrices)
PATH_MARKER = '"m":"path"'  # in a ``reasons`` JSON entry computed by path attribution


def is_exact(reasons: pl.Expr) -> pl.Expr:
    """True where a ``reasons`` JSON is TreeSHAP (no entry marked path), null where it is null."""
    return ~reasons.str.contains(PATH_MARKER, literal=True)


# How a feature reads in a reason: (label, unit suffix). Unknown features read as their name.
FEATURE_LABELS: dict[str, tuple[str, str]] = {
    "bsr_log_slope_7d": ("BSR 7-day log slope", "/day"),
    "bsr_log_slope_14d": ("BSR 14-day log slope", "/day"),
    "bsr_log_slope_30d": ("BSR 30-day log slope", "/day"),
    "bsr_pctl": ("BSR percentile in category", ""),
    "bsr_pctl_change_7d": ("BSR percentile 7-day change", ""),
    "bsr_pctl_change_30d": ("BSR percentile 30-day change", ""),
    "est_sales_7d_mean": ("sales estimate 7d", "/day"),
    "est_sales_30d_mean": ("sales estimate 30d", "/day"),
    "price_cv_30d": ("price volatility 30d", ""),
    "price_change_vs_median_30d": ("price vs 30-day median", ""),
    "promo_flag": ("on promotion", ""),
    "review_velocity_7d": ("review velocity 7d", "/day"),
    "review_velocity_14d": ("review velocity 14d", "/day"),
    "review_velocity_30d": ("review velocity 30d", "/day"),
    "rating_mean_30d": ("rating 30d", " stars"),
    "rating_change_30d": ("rating 30-day change", " stars"),
    "new_offer_count": ("new offers", ""),
    "new_offer_change_14d": ("new offers 14-day change", ""),
    "kw_top10_count": ("keywords in top 10", ""),
    "kw_top50_count": ("keywords in top 50", ""),
    "kw_mean_rank_change_7d": ("keyword rank 7-day change", ""),
    "title_length": ("title length", " chars"),
    "bullet_count": ("bullets", ""),
    "image_count": ("images", ""),
    "has_aplus": ("A+ content", ""),
    "attribute_flag_count": ("attribute flags", ""),
    "listing_quality_score": ("listing quality", ""),
    "age_days": ("age", " days"),
    "listing_change_days": ("days since listing change", " days"),
    "image_count_change_30d": ("images 30-day change", ""),
    "bullet_count_change_30d": ("bullets 30-day change", ""),
    "title_length_change_30d": ("title length 30-day change", " chars"),
    "listing_quality_change_30d": ("listing quality 30-day change", ""),
    "bsr_log_drop_7d_prior": ("BSR log drop, week before last", ""),
    "bsr_log_z_7d_prior": ("BSR vs own prior level (z)", ""),
    "review_burst_z_7d": ("review burst 7d (z)", ""),
    "price_step_7d_prior": ("price step vs prior weeks", ""),
}


def contributions(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """SHAP values per row: ``(rows, features + 1)``, the expected value in the last column.

    Rows sum to the raw score of ``booster.predict(matrix, raw_score=True)``."""
    contrib = booster.predict(matrix, pred_contrib=True)
    return np.asarray(contrib, dtype=np.float64).reshape(matrix.shape[0], -1)


@dataclass(frozen=True)
class PathAttribution:
    """Path attribution (Saabas, "tree interpreter") of a tree model, precomputed per tree.

    A node's value is the count-weighted mean output of the leaves below it (the leaf's own output
    for a leaf; the root's value is LightGBM's own expected value of the tree, as TreeSHAP uses it).
    Along a row's root-to-leaf path each split adds value(child) - value(node) to its split feature,
    so the contributions telescope: their sum plus the root value is the leaf's output, and over all
    trees, ``contributions + expected_value`` *is* the raw score (exactly, up to float rounding).
    ``tables[t][leaf]`` holds those per-feature sums of tree ``t`` for each of its leaves; a row only
    needs its leaves (``pred_leaf``), never its feature values, so LightGBM's routing (missing values,
    default-left, categorical splits) is whatever ``predict`` does. Unlike TreeSHAP it credits only
    the features on the row's own path, and the order of splits matters (a top split gets the
    larger share); it costs a table lookup per tree instead of TreeSHAP's walk of every path.
    """

    tables: tuple[np.ndarray, ...]  # per tree: (leaves, features) float64
    expected_value: float  # sum over trees of the root values
    n_features: int

    @classmethod
    def of(cls, booster: lgb.Booster, n_features: int | None = None) -> PathAttribution:
        """The tables of ``booster``'s trees as ``predict`` uses them (its best iteration if it has
        one, as ``dump_model`` and ``predict`` both default to). One tree per iteration only (a
        ranker or regressor); linear trees are refused, their leaves' outputs depend on the row."""
        model = booster.dump_model()
        if model.get("num_tree_per_iteration", 1) != 1:
            raise ValueError("path attribution needs one tree per iteration (not multiclass)")
        width = n_features if n_features is not None else model["max_feature_idx"] + 1
        if width <= model["max_feature_idx"]:
            raise ValueError(
                f"the model splits on feature {model['max_feature_idx']}, beyond {width} features"
            )
        tables, roots = [], []
        for tree in model["tree_info"]:
            table = np.zeros((tree["num_leaves"], width), dtype=np.float64)
            roots.append(_fill_paths(tree["tree_structure"], table))
            tables.append(table)
        return cls(tuple(tables), float(np.sum(roots)), width)

    def contributions(self, leaves: np.ndarray, *, chunk_rows: int = 4096) -> np.ndarray:
        """``(rows, features + 1)`` from ``booster.predict(matrix, pred_leaf=True)`` (rows, trees):
        the per-feature contributions and the expected value in the last column, as
        ``contributions`` (TreeSHAP) lays them out. Rows go in chunks that stay in cache."""
        leaves = np.asarray(leaves, dtype=np.intp).reshape(leaves.shape[0], -1)
        if leaves.shape[1] != len(self.tables):
            raise ValueError(f"{leaves.shape[1]} leaves a row for {len(self.tables)} trees")
        width = self.n_features
        out = np.empty((leaves.shape[0], width + 1), dtype=np.float64)
        out[:, -1] = self.expected_value
        for start in range(0, leaves.shape[0], chunk_rows):
            block = leaves[start : start + chunk_rows]
            acc = np.zeros((block.shape[0], width), dtype=np.float64)
            tmp = np.empty_like(acc)
            for t, table in enumerate(self.tables):  # a loop over trees; rows are vectorised
                np.take(table, block[:, t], axis=0, out=tmp)
                acc += tmp
            out[start : start + block.shape[0], :width] = acc
        return out


def _fill_paths(node: dict, table: np.ndarray) -> float:
    """Fill ``table`` (leaves x features) with each leaf's path contributions below ``node`` (a
    ``dump_model`` tree structure); return the root's value. Two walks: values bottom-up, then
    each split's value(child) - value(node) accumulated top-down into the leaves below it."""
    values: dict[int, tuple[float, float]] = {}  # id(node) -> (count, value)

    def value(n: dict) -> tuple[float, float]:
        if "split_feature" not in n:
            if "leaf_coeff" in n:
                raise ValueError("path attribution does not support linear trees")
            out = (float(n.get("leaf_count", 0)), float(n["leaf_value"]))
        else:
            (cl, vl), (cr, vr) = value(n["left_child"]), value(n["right_child"])
            # count-weighted as LightGBM's ExpectedValue; an empty node (no data) weighs its sides equally
            out = (cl + cr, (cl * vl + cr * vr) / (cl + cr) if cl + cr > 0 else (vl + vr) / 2)
        values[id(n)] = out
        return out

    def walk(n: dict, path: np.ndarray) -> None:
        if "split_feature" not in n:
            table[n.get("leaf_index", 0)] = path
            return
        for child in (n["left_child"], n["right_child"]):
            step = path.copy()
            step[n["split_feature"]] += values[id(child)][1] - values[id(n)][1]
            walk(child, step)

    root = value(node)[1]
    walk(node, np.zeros(table.shape[1], dtype=np.float64))
    return root


def path_contributions(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """Path attribution per row, laid out as ``contributions``: ``(rows, features + 1)`` with the
    expected value (the same as TreeSHAP's) last; rows sum to the raw score."""
    leaves = booster.predict(matrix, pred_leaf=True)
    return PathAttribution.of(booster, matrix.shape[1]).contributions(leaves)


def top_contributions(
    contrib: np.ndarray, values: pl.DataFrame, names: Sequence[str], *, top: int = DEFAULT_TOP
) -> pl.DataFrame:
    """Long frame ``row, place, f, v, c``: each row's ``top`` features by |contribution| (place 1 =
    largest, ties in feature order), with the feature's value from ``values`` (the scored frame, same
    row order; a null value stays null, a NaN stays NaN)."""
    shap = contrib[:, : len(names)]
    rows, k = shap.shape[0], min(top, len(names))
    # argpartition then a sort of only k columns: the order among the top k, cheaply, for all rows
    part = np.argpartition(-np.abs(shap), kth=k - 1, axis=1)[:, :k] if k < len(names) else None
    idx = part if part is not None else np.tile(np.arange(len(names)), (rows, 1))
    picked = np.take_along_axis(shap, idx, axis=1)
    order = np.argsort(-np.abs(picked), axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    # the picked features' values: one numpy gather over the value matrix and its null mask
    cells = values.select([pl.col(n).cast(pl.Float64) for n in names])
    value = np.take_along_axis(cells.to_numpy(), idx, axis=1).reshape(-1)
    null = np.take_along_axis(cells.select(pl.all().is_null()).to_numpy(), idx, axis=1).reshape(-1)
    return pl.DataFrame(
        {
            "row": np.repeat(np.arange(rows, dtype=np.int64), k),
            "place": np.tile(np.arange(1, k + 1, dtype=np.int64), rows),
            "f": pl.Series(idx.reshape(-1)).replace_strict(dict(enumerate(names)), return_dtype=pl.Utf8),
            "v": pl.Series(value, dtype=pl.Float64, nan_to_null=False),
            "c": np.take_along_axis(shap, idx, axis=1).reshape(-1),
        }
    ).with_columns(v=pl.when(pl.Series(null)).then(None).otherwise(pl.col("v")))


def _num(expr: pl.Expr, digits: int) -> pl.Expr:
    # rounded, as text; a missing value reads "n/a" (LightGBM's own missing-value branch)
    return expr.round_sig_figs(digits).cast(pl.Utf8).fill_null("n/a")


def reasons_columns(long: pl.DataFrame, rows: int, *, method: Method = EXACT) -> pl.DataFrame:
    """``reasons`` (JSON) and ``reasons_text`` per row 0..rows-1 from ``top_contributions`` (a row
    without any is null). ``method`` = how the contributions were computed: ``PATH`` marks each JSON
    entry ``"m": "path"``, ``EXACT`` (TreeSHAP) adds nothing, as before path attribution existed."""
    label = pl.col("f").replace_strict(
        {f: lab for f, (lab, _) in FEATURE_LABELS.items()}, default=pl.col("f"), return_dtype=pl.Utf8
    )
    unit = pl.col("f").replace_strict(
        {f: u for f, (_, u) in FEATURE_LABELS.items()}, default=pl.lit(""), return_dtype=pl.Utf8
    )
    sign = pl.when(pl.col("c") >= 0).then(pl.lit("+")).otherwise(pl.lit(""))
    text = pl.format(
        "{} {}{} ({}{})",
        label,
        _num(pl.col("v"), 3),
        pl.when(pl.col("v").is_null()).then(pl.lit("")).otherwise(unit),
        sign,
        pl.col("c").round(3).cast(pl.Utf8),
    )
    finite_v = pl.when(pl.col("v").is_finite()).then(pl.col("v").round_sig_figs(4))
    marker = {"m": pl.lit(method)} if method != EXACT else {}
    items = long.with_columns(
        json=pl.struct(pl.col("f"), v=finite_v, c=pl.col("c").round(4), **marker).struct.json_encode(),
        text=text,
    )
    k = long.height // rows if rows else 0
    if k and _dense(long, rows, k):  # top_contributions' layout: k places of every row, in order
        return items.select(
            reasons=pl.format("[{}]", pl.col("json").reshape((rows, k)).arr.join(",")),
            reasons_text=pl.col("text").reshape((rows, k)).arr.join(", "),
        )
    per_row = items.group_by("row").agg(
        reasons=pl.format("[{}]", pl.col("json").sort_by("place").str.join(",")),
        reasons_text=pl.col("text").sort_by("place").str.join(", "),
    )
    return (
        pl.DataFrame({"row": np.arange(rows, dtype=np.int64)})
        .join(per_row, on="row", how="left")
        .sort("row")
        .drop("row")
    )


def _dense(long: pl.DataFrame, rows: int, k: int) -> bool:
    """Whether ``long`` is rows 0..rows-1 with places 1..k each, sorted by (row, place)."""
    return np.array_equal(long["row"].to_numpy(), np.repeat(np.arange(rows), k)) and np.array_equal(
        long["place"].to_numpy(), np.tile(np.arange(1, k + 1), rows)
    )


def explain(
    booster: lgb.Booster,
    matrix: np.ndarray,
    values: pl.DataFrame,
    names: Sequence[str],
    *,
    top: int = DEFAULT_TOP,
    method: Method = EXACT,
    rows: np.ndarray | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> pl.DataFrame:
    """``reasons`` and ``reasons_text`` of the ``rows`` of ``matrix`` and ``values`` (the same rows in
    the same order; default all), one output row each in that order, from TreeSHAP (``EXACT``, ~1 ms
    of CPU a row) or path attribution (``PATH``, ~15 us of CPU a row). Rows go ``chunk_rows`` at a time, so
    the contribution matrices and the per-reason frames stay small and only the text accumulates."""
    if method not in (EXACT, PATH):
        raise ValueError(f"method must be {EXACT!r} or {PATH!r}, not {method!r}")
    chosen = np.arange(matrix.shape[0]) if rows is None else np.asarray(rows)
    if chosen.size == 0:
        return pl.DataFrame(schema={"reasons": pl.Utf8, "reasons_text": pl.Utf8})
    paths = PathAttribution.of(booster, matrix.shape[1]) if method == PATH else None
    parts = []
    for start in range(0, chosen.size, chunk_rows):
        block = chosen[start : start + chunk_rows]
        sub = matrix[block]
        contrib = (
            contributions(booster, sub)
            if paths is None
            else paths.contributions(booster.predict(sub, pred_leaf=True))
        )
        long = top_contributions(contrib, values[block], names, top=top)
        parts.append(reasons_columns(long, block.size, method=method))
    return pl.concat(parts, how="vertical")


def sales_window(mart: pl.DataFrame, calibration: pl.DataFrame) -> pl.DataFrame:
    """date, bsr_root and the sales estimate (units/day, ``core.sales``) of mart rows: what a
    candidate's window looked like to the features that put it on the list."""
    from asin_platform.core.sales import FALLBACK_A, FALLBACK_B, estimate_sales, validate_calibration

    est = estimate_sales(
        pl.col("bsr_root"), pl.col("a").fill_null(FALLBACK_A), pl.col("b").fill_null(FALLBACK_B)
    )
    return (
        mart.join(validate_calibration(calibration), on=["site", "category_id"], how="left")
        .select("date", "bsr_root", est_sales=est)
        .sort("date")
    )
