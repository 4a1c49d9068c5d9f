"""Keyword-rank features of core/features.py, keyed by grid position (pure polars).

``kw_top10_count`` / ``kw_top50_count``: keywords the product ranks in the top 10 / 50 for on T;
``kw_mean_rank_change_7d``: the mean rank change vs T-7 over the keywords it ranks for on both days.
Definitions: docs/features.md.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from asin_platform.core.feature_grid import Blocks, codes

KEYWORD_LAG = 7
TOP_RANKS: tuple[int, ...] = (10, 50)


def keyword_features(
    keywords: pl.LazyFrame,
    targets: list[date],
    lo: date,
    span: int,
    blocks: Blocks,
) -> pl.LazyFrame:
    """kw_top10_count / kw_top50_count on T and the mean rank change vs T-7 over the keywords the
    product ranks for on both days (so a keyword gained or lost does not move the mean), keyed by
    grid position. Keyword rows of products absent from the mart have no block and drop out."""
    lag = timedelta(days=KEYWORD_LAG)
    epoch_day = (lo - date(1970, 1, 1)).days
    kw = (
        keywords.filter(pl.col("date").is_in([*targets, *(t - lag for t in targets)]) & (pl.col("rank") > 0))
        .select(
            "date",
            "rank",
            _block=blocks.block(pl.col("site"), pl.col("asin")),
            _kw=pl.col("keyword").cast(codes("keywords")).to_physical(),
        )
        .drop_nulls("_block")
        .select(
            "date", "rank", "_kw", _pos=pl.col("_block") * span + pl.col("date").cast(pl.Int64) - epoch_day
        )
        # both branches below read these rows: without the cache the string casts ran twice
        .cache()
    )
    today = kw.filter(pl.col("date").is_in(targets))
    # (position, keyword) as one Int64 for the T vs T-7 match: one integer key joins ~2x faster
    # than two; positions stay < 2^39 and keyword codes < 2^24 for any realistic call
    key = pl.col("_pos") * 2**24 + pl.col("_kw")
    before = kw.filter(pl.col("date").is_in([t - lag for t in targets])).select(
        _key=(pl.col("_pos") + KEYWORD_LAG) * 2**24 + pl.col("_kw"), rank_before="rank"
    )
    counts = today.group_by("_pos").agg(
        [(pl.col("rank") <= k).sum().alias(f"kw_top{k}_count") for k in TOP_RANKS]
    )
    change = (
        today.with_columns(_key=key)
        .join(before, on="_key", how="inner")
        .group_by("_pos")
        .agg(kw_mean_rank_change_7d=(pl.col("rank") - pl.col("rank_before")).cast(pl.Float64).mean())
    )
    return counts.join(change, on="_pos", how="full", coalesce=True)
