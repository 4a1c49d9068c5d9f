"""Listing completeness, ``listing_quality_score`` (pure polars): a feature of its own
(core/features.py) and, 30 days earlier, the base of ``listing_quality_change_30d``
(core/history_features.py). Definition: docs/features.md."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

# listing_quality_score = sum of weight * min(value / cap, 1); caps follow the upstream listing
# contract (5 bullets, 4 attribute flags) and common marketplace guidance (150-char titles,
# 7 images). Weights sum to 1, so the score lies in [0, 1].
LISTING_QUALITY: tuple[tuple[str, float, float], ...] = (
    # (column, cap, weight)
    ("title_length", 150.0, 0.20),
    ("bullet_count", 5.0, 0.20),
    ("image_count", 7.0, 0.25),
    ("has_aplus", 1.0, 0.20),
    ("attribute_flag_count", 4.0, 0.15),
)
LISTING_COLUMNS: tuple[str, ...] = tuple(c for c, _, _ in LISTING_QUALITY)


def listing_quality_score(column: Callable[[str], str] = str) -> pl.Expr:
    """Weighted, capped listing completeness in [0, 1] (see LISTING_QUALITY); a missing attribute
    scores 0, and the score is null only when the whole listing is missing. ``column`` names the
    column holding each attribute (e.g. its value 30 days earlier, core/history_features.py)."""
    # one multiplication by a constant per part and a plain left-to-right sum: a division by a
    # literal and sum_horizontal both took a different kernel on a one-row frame (1 ULP apart),
    # and a chunked computation must equal the one-shot one bit for bit
    parts = [
        pl.col(column(c)).cast(pl.Float64).fill_null(0.0).clip(0.0, cap) * (weight / cap)
        for c, cap, weight in LISTING_QUALITY
    ]
    any_known = pl.any_horizontal([pl.col(column(c)).is_not_null() for c in LISTING_COLUMNS])
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return pl.when(any_known).then(total).alias("listing_quality_score")
