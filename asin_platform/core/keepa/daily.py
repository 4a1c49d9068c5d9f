"""Keepa change logs -> one value per UTC day (pure; the rules and why are in docs/keepa.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl

from asin_platform.core.keepa.format import (
    _GAP_MARKERS,
    MAX_MAGNITUDE,
    ImplausibleValueError,
    KeepaFormatError,
    keepa_minutes_to_utc,
)
from asin_platform.schemas import UTC_TS

# --------------------------------------------------------------------------------------------------------
# One history
# --------------------------------------------------------------------------------------------------------


def _check_integers(arr: Sequence[Any]) -> None:
    """Refuse floats and booleans before numpy would silently turn them into integers (1234.9 -> 1234,
    which as cents is 12.34; ``true`` -> 1 cent). One C-level pass over the element types."""
    try:
        kinds = set(map(type, arr)) - {int}
    except TypeError as exc:  # not iterable at all
        raise KeepaFormatError(f"history is not a list: {exc}") from exc
    if bool in kinds:
        raise ImplausibleValueError("history holds a boolean where Keepa sends integers")
    if float in kinds:
        bad = next(v for v in arr if isinstance(v, float))
        raise ImplausibleValueError(f"history holds the non-integer {bad!r} where Keepa sends integers")


def _split_history(arr: Sequence[int] | None, *, triples: bool) -> tuple[np.ndarray, np.ndarray]:
    """(keepa minutes, raw values) of a flat history; triples are folded to price + shipping.

    A triple whose price or shipping is a gap marker becomes a gap: the total is unknown.
    """
    if arr is None:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    width = 3 if triples else 2
    _check_integers(arr)
    try:
        flat = np.asarray(arr, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise KeepaFormatError(f"history is not a flat list of integers: {exc}") from exc
    if flat.size and int(np.abs(flat).max()) > MAX_MAGNITUDE:
        raise ImplausibleValueError(
            f"history holds {int(np.abs(flat).max())}, beyond Keepa's range ({MAX_MAGNITUDE})"
        )
    if flat.ndim != 1 or flat.size % width:
        raise KeepaFormatError(
            f"history of length {flat.size} is not a sequence of {'triples' if triples else 'pairs'}"
        )
    rows = flat.reshape(-1, width)
    times, values = rows[:, 0], rows[:, 1]
    if triples:
        shipping = rows[:, 2]
        gap = np.isin(values, _GAP_MARKERS) | np.isin(shipping, _GAP_MARKERS)
        values = np.where(gap, _GAP_MARKERS[0], values + shipping)
    return times, values


def _window(times: np.ndarray, values: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The points that can decide days in [lo, hi) (Keepa minutes): the last one before ``lo`` and all
    before ``hi``. Keepa arrays are chronological; an unsorted one is kept whole rather than guessed at."""
    if times.size < 2 or bool(np.any(times[1:] < times[:-1])):
        return times, values
    start = max(int(np.searchsorted(times, lo, side="left")) - 1, 0)
    stop = int(np.searchsorted(times, hi, side="left"))
    return times[start:stop], values[start:stop]


def _null_markers(expr: pl.Expr) -> pl.Expr:
    # Only the documented markers become null; any other negative value is kept so that standardise
    # can quarantine it instead of it silently disappearing here.
    return pl.when(expr.is_in(list(_GAP_MARKERS))).then(None).otherwise(expr)


def decode_history(arr: Sequence[int] | None, *, triples: bool = False) -> pl.DataFrame:
    """Decode one Keepa history into ``(ts: Datetime UTC, value: Float64)``, in array order.

    ``-1`` / ``-2`` become null values but stay as rows: they mark the start of a gap. Values keep
    Keepa's units (cents, tenths of stars); ``triples=True`` (the ``*_SHIPPING`` series, see
    :data:`SHIPPING_SERIES`) returns price + shipping. ``None`` (a missing series) gives an empty frame.
    """
    times, values = _split_history(arr, triples=triples)
    return pl.DataFrame({"ts": times, "value": values}, schema={"ts": pl.Int64, "value": pl.Int64}).select(
        ts=keepa_minutes_to_utc(pl.col("ts")),
        value=_null_markers(pl.col("value")).cast(pl.Float64),
    )


# --------------------------------------------------------------------------------------------------------
# Change log -> daily values
# --------------------------------------------------------------------------------------------------------

Rule = Literal["last", "median"]
DaysArg = Sequence[date] | tuple[date, date]


def _as_days(days: DaysArg) -> list[date]:
    """A 2-tuple ``(start, end)`` is an inclusive range; any other sequence is the explicit days."""
    if isinstance(days, tuple) and len(days) == 2 and all(isinstance(d, date) for d in days):
        start, end = days
        if end < start:
            raise ValueError(f"day range ends ({end}) before it starts ({start})")
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    out = sorted(set(days))
    for day in out:
        # datetime is a date subclass; refusing it avoids silently mixing instants and UTC days.
        if isinstance(day, datetime) or not isinstance(day, date):
            raise TypeError(f"days must be datetime.date values, got {day!r}")
    return out


def _day_start(expr: pl.Expr) -> pl.Expr:
    return expr.cast(UTC_TS)


def _resolve_days(
    hist: pl.DataFrame,
    targets: pl.DataFrame,
    by: list[str],
    median_points: pl.Expr | None,
) -> pl.DataFrame:
    """The vectorised daily rule over many histories at once.

    ``hist``: ``by`` + ``ts`` (Datetime UTC) + ``value`` (null = gap marker), any order;
    ``targets``: ``by`` + ``date``. Returns ``targets`` + ``value``. ``median_points`` selects the
    history rows whose days use the median rule (``None``: every series uses the "last" rule).
    """
    key = [*by, "ts"]
    # A stable sort keeps array order among equal times, so dropping every row whose successor has
    # the same key resolves a duplicated minute to the later entry, as a change log reads. (A shift
    # comparison, not unique(): the frame is sorted already and hashing millions of keys is not free.)
    same_as_next = pl.all_horizontal([pl.col(c) == pl.col(c).shift(-1) for c in key]).fill_null(False)
    points = hist.sort(key, maintain_order=True).filter(~same_as_next)
    ends = targets.with_columns(_next_midnight=_day_start(pl.col("date")) + timedelta(days=1)).sort(
        [*by, "_next_midnight"]
    )
    # The value in force at the end of day d is the last change strictly before the next midnight,
    # however old; a gap marker in force yields null, and so does a day before the first change.
    resolved = ends.join_asof(
        points,
        left_on="_next_midnight",
        right_on="ts",
        by=by,
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,  # sorted above within each group; polars cannot verify it with `by`
    ).drop("_next_midnight", "ts")
    if median_points is None:
        return resolved
    # Stats of untargeted days are dropped by the left join below; points were already cut to the
    # requested window by the caller (see _window), so filtering them to targets first saves nothing.
    day_stats = (
        points.filter(median_points)
        .group_by([*by, pl.col("ts").dt.date().alias("date")])
        # median() skips nulls: gap markers inside a day do not vote; a day of only markers is null.
        .agg(_median=pl.col("value").median(), _points=pl.len())
    )
    return (
        resolved.join(day_stats, on=[*by, "date"], how="left")
        .with_columns(
            value=pl.when(pl.col("_points").is_not_null()).then(pl.col("_median")).otherwise(pl.col("value"))
        )
        .drop("_median", "_points")
    )


def daily_values(history: pl.DataFrame, days: DaysArg, *, rule: Rule = "last") -> pl.DataFrame:
    """One value per UTC day from a Keepa change log (``decode_history`` output).

    ``days``: explicit days (any sequence, e.g. a list) or an inclusive ``(start, end)`` 2-tuple.

    Rule "last" (prices, counts, rating): the value of day ``d`` is the value in force at the end of
    ``d`` (UTC), i.e. of the last point with ``ts < d + 1 day``, however old that point is. If that
    point is a gap marker (-1/-2) the day is null, and a day before the first point is null.

    Rule "median" (sales ranks): if day ``d`` has points (``d <= ts < d + 1 day``), the median of their
    non-gap values (gap markers do not vote; a day whose points are all markers is null); if it has
    none, the "last" value carried into the day. The median is over points, not time-weighted:
    Keepa samples ranks every few hours, and a rank that changed at 23:00 is one vote, not 23 hours.

    Returns ``(date: Date, value)`` sorted by date, one row per requested day.
    """
    if rule not in ("last", "median"):
        raise ValueError(f"rule must be 'last' or 'median', got {rule!r}")
    targets = pl.DataFrame({"date": _as_days(days)}, schema={"date": pl.Date}).with_columns(
        _k=pl.lit(0, pl.Int32)
    )
    hist = history.select("ts", "value").with_columns(_k=pl.lit(0, pl.Int32))
    median = pl.lit(True) if rule == "median" else None
    return _resolve_days(hist, targets, ["_k"], median).sort("date").select("date", "value")
