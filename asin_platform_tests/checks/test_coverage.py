"""The coverage arithmetic (core/coverage.py) and the freshness verdict (core/freshness.py)."""

import json
from datetime import UTC, date, datetime

import polars as pl

from asin_platform.core.coverage import coverage_table, failed_requests
from asin_platform.core.freshness import freshness_verdict

DAY = date(2025, 3, 10)
RAW_SCHEMA = {
    "site": pl.Utf8,
    "date": pl.Date,
    "source": pl.Utf8,
    "endpoint": pl.Utf8,
    "request_params": pl.Utf8,
    "error": pl.Utf8,
}


def _raw(rows: list[tuple[str, str, str, list[str], str | None]]) -> pl.DataFrame:
    """(site, source, endpoint, asins, error) -> raw payload rows of DAY."""
    return pl.DataFrame(
        [
            (
                site,
                DAY,
                source,
                endpoint,
                json.dumps({"asins": ",".join(asins)} if asins else {"page": "1"}),
                error,
            )
            for site, source, endpoint, asins, error in rows
        ],
        schema=RAW_SCHEMA,
        orient="row",
    )


def _mart(site: str, asins: list[str], **nulls: list[str]) -> pl.DataFrame:
    """Mart rows with every field set, except the ASINs listed per field in ``nulls``."""
    return pl.DataFrame(
        {
            "site": site,
            "date": [DAY] * len(asins),
            "asin": asins,
            **{
                column: [None if a in nulls.get(column, []) else value for a in asins]
                for column, value in {
                    "category_id": "c1",
                    "bsr_root": 10,
                    "price": 9.5,
                    "title_length": 40,
                    "bullet_count": 5,
                    "image_count": 7,
                }.items()
            },
        }
    )


def _tracked(site: str, asins: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"site": site, "date": [DAY] * len(asins), "asin": asins})


KEYS = pl.DataFrame({"site": ["US"], "date": [DAY]})
ASINS = [f"A{i:02d}" for i in range(10)]


def test_full_partition_passes_with_every_share_counted() -> None:
    raw = _raw(
        [
            ("US", "unified", "/v1/sites/{site}/asins", [], None),
            ("US", "unified", "/v1/sites/{site}/products", ASINS, None),
            ("US", "unified", "/v1/sites/{site}/reviews", ASINS[:5], None),
            ("US", "unified", "/v1/sites/{site}/reviews", ASINS[5:], "HTTP 500 after 5 attempts"),
            ("US", "unified", "/v1/sites/{site}/keywords", ASINS, None),
        ]
    )
    mart = _mart("US", ASINS[:9], title_length=ASINS[:2], bullet_count=ASINS[:1], image_count=ASINS[:1])
    row = coverage_table(KEYS, _tracked("US", ASINS), mart, raw, min_coverage=0.9).row(0, named=True)
    assert (row["tracked"], row["core"], row["timeseries"], row["listing"]) == (10, 9, 9, 8)
    assert (row["core_coverage"], row["timeseries_coverage"], row["listing_coverage"]) == (0.9, 0.9, 0.8)
    assert (row["reviews_coverage"], row["keywords_coverage"]) == (0.5, 1.0)
    # 90% coverage passes a 90% threshold, but the reviews batch that failed for good fails it
    assert (row["failed_requests"], row["failed_asins"]) == (1, 5)
    assert row["failed_endpoints"] == ["/v1/sites/{site}/reviews"]
    assert row["passed"] is False


def test_failed_products_batch_fails_even_with_the_timeseries_complete() -> None:
    raw = _raw(
        [
            ("US", "unified", "/v1/sites/{site}/products", ASINS[:4], "HTTP 503 after 5 attempts"),
            ("US", "unified", "/v1/sites/{site}/products", ASINS[4:], None),
        ]
    )
    mart = _mart(
        "US",
        ASINS,
        category_id=ASINS[:4],
        title_length=ASINS[:4],
        bullet_count=ASINS[:4],
        image_count=ASINS[:4],
    )
    row = coverage_table(KEYS, _tracked("US", ASINS), mart, raw, min_coverage=0.5).row(0, named=True)
    assert row["timeseries_coverage"] == 1.0 and row["core_coverage"] == 0.6
    assert (row["failed_requests"], row["failed_asins"], row["failed_endpoints"]) == (
        1,
        4,
        ["/v1/sites/{site}/products"],
    )
    assert row["passed"] is False


def test_low_timeseries_share_fails_and_complete_partition_passes() -> None:
    raw = _raw([("US", "unified", "/v1/sites/{site}/timeseries", ASINS, None)])
    low = _mart("US", ASINS, bsr_root=ASINS[:2], price=ASINS[:2])
    assert coverage_table(KEYS, _tracked("US", ASINS), low, raw, min_coverage=0.95)["passed"].to_list() == [
        False
    ]
    half_null = _mart("US", ASINS, bsr_root=ASINS[:5])  # a price alone is a timeseries row
    ok = coverage_table(KEYS, _tracked("US", ASINS), half_null, raw, min_coverage=0.95)
    assert ok.select("timeseries_coverage", "passed").row(0) == (1.0, True)


def test_keepa_has_no_reviews_or_keywords_and_is_not_counted_missing() -> None:
    raw = _raw([("JP", "keepa", "/product", ASINS, None)])
    keys = pl.DataFrame({"site": ["JP"], "date": [DAY]})
    row = coverage_table(keys, _tracked("JP", ASINS), _mart("JP", ASINS), raw, min_coverage=0.95).row(
        0, named=True
    )
    assert row["reviews_coverage"] is None and row["keywords_coverage"] is None
    assert row["passed"] is True


def test_partition_without_tracked_asins_fails_and_every_key_gets_a_row() -> None:
    keys = pl.DataFrame({"site": ["US", "DE"], "date": [DAY, DAY]})
    raw = _raw([("US", "unified", "/v1/sites/{site}/products", ASINS, None)])
    frame = coverage_table(keys, _tracked("US", ASINS), _mart("US", ASINS), raw, min_coverage=0.95)
    assert frame.select("site", "tracked", "passed").rows() == [("DE", 0, False), ("US", 10, True)]


def test_failed_requests_counts_asins_per_partition() -> None:
    raw = _raw(
        [
            ("US", "unified", "/v1/sites/{site}/products", ASINS[:3], "timeout"),
            ("US", "unified", "/v1/sites/{site}/timeseries", ASINS[:2], "HTTP 500"),
            ("US", "unified", "/v1/sites/{site}/asins", [], "HTTP 500"),
        ]
    )
    assert failed_requests(raw).row(0, named=True) == {
        "site": "US",
        "date": DAY,
        "failed_requests": 3,
        "failed_asins": 5,
        "failed_endpoints": [
            "/v1/sites/{site}/asins",
            "/v1/sites/{site}/products",
            "/v1/sites/{site}/timeseries",
        ],
    }


NOW = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


def test_freshness_judges_the_newest_day_not_an_old_backfill() -> None:
    # yesterday's data is 15 h old at 15:00: fresh, however old the rest of the table is
    fresh = freshness_verdict(
        {"US": date(2026, 12, 3), "DE": date(2026, 12, 3)}, sites=["US", "DE"], now=NOW, max_lag_hours=36
    )
    assert fresh.passed and fresh.lag_hours_by_site == {"US": 15.0, "DE": 15.0}


def test_freshness_fails_when_the_newest_day_is_older_than_the_lag() -> None:
    verdict = freshness_verdict(
        {"US": date(2025, 12, 3), "DE": date(2026, 12, 3)},
        sites=["US", "DE", "JP"],
        now=NOW,
        max_lag_hours=36,
    )
    assert not verdict.passed
    assert verdict.stale_sites == ["JP", "US"]
    assert verdict.latest_by_site == {"US": "2025-12-03", "DE": "2026-12-03", "JP": None}
    assert "JP (no data)" in verdict.description and "US (newest 2025-12-03" in verdict.description


def test_keepa_backfill_counts_the_answered_product_as_its_core() -> None:
    """An old Keepa day has no listing snapshot (the parser withholds today's listing from it), so
    its mart rows carry no category: the core is the ASINs with a Keepa mart row, and the one ASIN
    whose product request failed for good has none, and fails the partition."""
    raw = _raw(
        [
            ("UK", "unified", "/v1/sites/{site}/asins", [], None),
            ("UK", "keepa", "/product", ASINS[:9], None),
            ("UK", "keepa", "/product", ASINS[9:], "HTTP 429 after 3 attempts in 100.0s"),
        ]
    )
    answered = ASINS[:9]
    mart = _mart(
        "UK",
        answered,
        category_id=answered,
        title_length=answered,
        bullet_count=answered,
        image_count=answered,
    ).with_columns(source=pl.lit("keepa"))
    keys = pl.DataFrame({"site": ["UK"], "date": [DAY]})
    [row] = coverage_table(keys, _tracked("UK", ASINS), mart, raw, min_coverage=0.9).to_dicts()
    assert (row["core"], row["core_coverage"], row["timeseries_coverage"]) == (9, 0.9, 0.9)
    assert row["listing_coverage"] == 0.0
    assert row["reviews_coverage"] is None and row["keywords_coverage"] is None
    assert (row["failed_requests"], row["failed_asins"], row["passed"]) == (1, 1, False)


def test_keepa_range_day_without_its_own_product_payload_is_keepa() -> None:
    """A ranged Keepa run stores /product on the range's first day only: a later day's raw rows are
    unified universe pages, yet its Keepa mart rows make it a Keepa partition (no reviews/keywords
    expected, the core is the rows)."""
    raw = _raw([("UK", "unified", "/v1/sites/{site}/asins", [], None)])
    mart = _mart("UK", ASINS, category_id=ASINS).with_columns(source=pl.lit("keepa"))
    keys = pl.DataFrame({"site": ["UK"], "date": [DAY]})
    [row] = coverage_table(keys, _tracked("UK", ASINS), mart, raw, min_coverage=0.95).to_dicts()
    assert (row["core"], row["core_coverage"], row["passed"]) == (10, 1.0, True)
    assert row["reviews_coverage"] is None and row["keywords_coverage"] is None
