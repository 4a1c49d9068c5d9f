"""core.chunking: any cut of a range gives exactly the rows of the one-shot computation."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from asin_platform.core.chunking import (
    AsinBlock,
    ChunkPlan,
    asin_blocks,
    build_features_chunked,
    date_blocks,
    default_max_cells,
    iter_features,
    iter_scores,
    plan_chunks,
)
from asin_platform.core.features import build_features
from asin_platform.core.score import score_baseline
from asin_platform.settings import ScoreWeights
from asin_platform_tests.core.test_features import CAL, _random_market, day

KEY = ("site", "date", "asin")


@pytest.fixture(scope="module")
def market() -> tuple[pl.LazyFrame, pl.LazyFrame]:
    return _random_market(seed=5)


@pytest.fixture(scope="module")
def targets() -> list[date]:
    return [day(-d) for d in range(0, 12)] + [day(-20), day(-33)]


@pytest.fixture(scope="module")
def one_shot(market: tuple[pl.LazyFrame, pl.LazyFrame], targets: list[date]) -> pl.DataFrame:
    mart_lf, kw_lf = market
    return build_features(mart_lf, kw_lf, targets, calibration=CAL)


@pytest.mark.parametrize(
    "plan",
    [
        ChunkPlan(days=1, asins=None),  # one day at a time
        ChunkPlan(days=5, asins=None),
        ChunkPlan(days=100, asins=None),  # one chunk
        ChunkPlan(days=1, asins=1),  # one ASIN at a time: every percentile comes from outside
        ChunkPlan(days=1, asins=7),  # blocks that do not divide the 25 ASINs of a site
        ChunkPlan(days=4, asins=10),
    ],
    ids=str,
)
def test_any_cut_gives_exactly_the_one_shot_rows(
    market: tuple[pl.LazyFrame, pl.LazyFrame], targets: list[date], one_shot: pl.DataFrame, plan: ChunkPlan
) -> None:
    mart_lf, kw_lf = market
    chunks = list(iter_features(mart_lf, kw_lf, targets, calibration=CAL, plan=plan))
    # each chunk holds whole target days: every ASIN of its dates, no date in two chunks
    days_per_chunk = [set(c["date"].unique()) for c in chunks]
    assert sum(len(d) for d in days_per_chunk) == len(set(targets))
    for chunk in chunks:  # (site, asin, date) order within a chunk, as one build_features call
        assert_frame_equal(chunk, chunk.sort("site", "asin", "date"))
    together = pl.concat(chunks)
    assert together.height == one_shot.height > 500
    # float bits included (check_exact): the cut must not change a single value
    assert_frame_equal(together.sort(*KEY), one_shot.sort(*KEY), check_exact=True)
    assert together["bsr_pctl"].null_count() < together.height  # the percentile path was exercised


def test_budgeted_chunks_equal_the_one_shot_and_respect_the_budget(
    market: tuple[pl.LazyFrame, pl.LazyFrame], targets: list[date], one_shot: pl.DataFrame
) -> None:
    mart_lf, kw_lf = market
    # 50 (site, asin) pairs: one day of each plus its 30-day lookback is 50 x 31 = 1,550 cells;
    # one cell fewer cannot hold a day of every ASIN -> ASIN blocks of 1,549 // 31 = 49
    assert plan_chunks(50, 34, 30, 1_550) == ChunkPlan(days=1, asins=None)
    assert plan_chunks(50, 34, 30, 1_549) == ChunkPlan(days=1, asins=49)
    assert plan_chunks(50, 34, 30, 50 * 40) == ChunkPlan(days=10, asins=None)  # 50 x (10 + 30)
    assert plan_chunks(50, 3, 30, 10**9) == ChunkPlan(days=3, asins=None)  # never past the span
    for cells in (500, 1_550, 10**9):
        out = build_features_chunked(mart_lf, kw_lf, targets, calibration=CAL, max_cells=cells)
        assert_frame_equal(out.sort(*KEY), one_shot.sort(*KEY), check_exact=True)


def test_scores_by_date_block_equal_the_one_shot_score(one_shot: pl.DataFrame, targets: list[date]) -> None:
    weights = ScoreWeights()
    whole = score_baseline(one_shot, weights, min_category_size=5)
    for days in (1, 3, 50):
        parts = list(iter_scores(one_shot.lazy(), targets, days, weights=weights, min_category_size=5))
        assert all(p["date"].n_unique() <= days for p in parts)
        assert_frame_equal(pl.concat(parts).sort(*KEY), whole.sort(*KEY), check_exact=True)


def test_date_and_asin_blocks() -> None:
    ts = [day(0), day(-1), day(-5), day(-1), day(-9)]
    assert date_blocks(ts, 1) == [[day(-9)], [day(-5)], [day(-1)], [day(0)]]
    assert date_blocks(ts, 5) == [[day(-9), day(-5)], [day(-1), day(0)]]
    pairs = pl.DataFrame({"site": ["US", "US", "DE", "US", "DE"], "asin": ["B3", "B1", "B2", "B2", "B1"]})
    assert asin_blocks(pairs, 2) == [
        AsinBlock("DE", "B1", "B2"),
        AsinBlock("US", "B1", "B2"),
        AsinBlock("US", "B3", "B3"),
    ]
    with pytest.raises(ValueError, match="at least 1 day"):
        date_blocks(ts, 0)
    with pytest.raises(ValueError, match="at least 1 ASIN"):
        asin_blocks(pairs, 0)


def test_default_budget_follows_available_memory() -> None:
    assert default_max_cells(8 * 2**30) == 8 * 2**30 // 4 // 400  # a quarter of 8 GB, 400 B a cell
    assert default_max_cells(2**20) == 200_000  # floor
    assert default_max_cells(2**40) == 6_000_000  # ceiling
    assert default_max_cells() >= 200_000


def test_short_lookback_is_refused_before_any_work(market: tuple[pl.LazyFrame, pl.LazyFrame]) -> None:
    mart_lf, kw_lf = market
    with pytest.raises(ValueError, match="lookback=10"):
        next(iter_features(mart_lf, kw_lf, [day(0)], lookback=10))
