"""standardise: parsed payloads -> mart tables, quarantine and the quality report.

Inputs are raw payload rows built from contract-shaped bodies and parsed with parse_unified, so
these tests cover the path the mart asset runs.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from asin_platform.core import standardise as standardise_module
from asin_platform.core.standardise import StandardiseOutputError, StandardiseResult, standardise
from asin_platform.core.unified import parse_unified
from asin_platform.schemas import (
    DIM_ASIN,
    FACT_KEYWORDS,
    FACT_REVIEWS,
    MART_TIMESERIES_DAILY,
    PANDERA_MODELS,
    QUARANTINE,
    TABLES,
    validate,
)
from asin_platform.settings import PlausibilityBounds
from asin_platform_tests.core.test_unified import (
    D1,
    D2,
    KEYWORDS,
    REVIEWS,
    T1,
    T2,
    TIMESERIES,
    payload,
    point,
    raw_frame,
    review,
    slice_payloads,
)

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
A1, A2, A3 = "B0AAAAAAA1", "B0AAAAAAA2", "B0AAAAAAA3"


def run(rows: list[dict[str, Any]], **kwargs: Any) -> StandardiseResult:
    return standardise(parse_unified(raw_frame(rows)), now=NOW, **kwargs)


def timeseries(payload_id: str, items: dict[str, list[dict[str, Any]]], **kw: Any) -> dict[str, Any]:
    return payload(
        payload_id, TIMESERIES, {"items": [{"asin": a, "points": p} for a, p in items.items()]}, **kw
    )


def mart_row(result: StandardiseResult, asin: str, day: date = D1, site: str = "US") -> dict[str, Any]:
    rows = result.mart.filter(site=site, date=day, asin=asin).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


# --- happy path ---------------------------------------------------------------------------------------
def test_happy_path_exact_rows_and_report():
    result = run(slice_payloads("US", D1, [A1, A2]))

    assert result.mart.schema == pl.Schema(MART_TIMESERIES_DAILY.schema)
    assert result.mart.select("asin").to_series().to_list() == [A1, A2]
    assert mart_row(result, A1) == {
        "site": "US",
        "date": D1,
        "asin": A1,
        "category_id": "beauty",
        "subcategory_id": "beauty-serums",
        "price": 24.99,
        "bsr_root": 15234,
        "bsr_sub": 312,
        "rating": 4.4,
        "review_count": 1873,
        "new_offer_count": 3,
        "buybox_seller": "Lumora Direct",
        "title_length": 142,
        "bullet_count": 5,
        "image_count": 7,
        "has_aplus": True,
        "attribute_flag_count": 3,
        "listed_since": date(2025, 3, 14),
        "flag_bsr_invalid": False,
        "flag_rating_invalid": False,
        "flag_price_invalid": False,
        "flag_price_spike": False,
        "source": "unified",
        "payload_id": "US-2026-11-20-timeseries",
        "fetched_at": T1,
    }
    assert result.dim_asin.schema == pl.Schema(DIM_ASIN.schema)
    assert result.dim_asin.row(0, named=True) == {
        "site": "US",
        "asin": A1,
        "title": f"Serum {A1}",
        "brand": "Lumora",
        "category_id": "beauty",
        "category_path": "Beauty > Skin Care > Serums",
        "subcategory_id": "beauty-serums",
        "listed_since": date(2025, 3, 14),
        "first_seen": D1,
        "last_seen": D1,
        "source": "unified",
    }
    assert result.fact_reviews.rows() == [
        ("US", D1, A1, f"R-{A1}-20", 5, True, "US-2026-11-20-reviews"),
        ("US", D1, A2, f"R-{A2}-20", 5, True, "US-2026-11-20-reviews"),
    ]
    assert result.fact_keywords.rows() == [
        ("US", D1, A1, "vitamin c serum", 48000, 7, "US-2026-11-20-keywords"),
        ("US", D1, A2, "vitamin c serum", 48000, 7, "US-2026-11-20-keywords"),
    ]
    assert result.quarantine.is_empty() and result.quarantine.schema == pl.Schema(QUARANTINE.schema)
    report = result.report
    assert (report.tracked_asins, report.mart_rows, report.covered_rows, report.coverage) == (2, 2, 2, 1.0)
    assert (report.duplicates_dropped, report.quarantined_total, report.malformed_payloads) == (0, 0, 0)
    assert report.quarantined_by_reason == {}
    assert report.by_slice.rows() == [("US", D1, 2, 2, 2, 1.0, 0, 0)]


# --- deduplication ------------------------------------------------------------------------------------
def test_duplicated_point_latest_fetch_wins():
    rows = slice_payloads("US", D1, [A1, A2])
    rows += [
        timeseries("refetch-late", {A1: [point(D1, price=19.99, bsr_root=900)]}, fetched_at=T2),
        timeseries(
            "refetch-early",
            {A1: [point(D1, price=99.0, bsr_root=1)]},
            fetched_at=datetime(2026, 11, 21, 0, 0, tzinfo=UTC),
        ),
    ]
    result = run(rows)
    row = mart_row(result, A1)
    assert (row["price"], row["bsr_root"], row["payload_id"], row["fetched_at"]) == (
        19.99,
        900,
        "refetch-late",
        T2,
    )
    assert mart_row(result, A2)["payload_id"] == "US-2026-11-20-timeseries"
    assert result.report.duplicates_dropped == 2
    assert result.report.by_slice["duplicates_dropped"].to_list() == [2]
    assert result.quarantine.is_empty()


def test_same_fetch_time_highest_payload_id_wins():
    rows = slice_payloads("US", D1, [A1])
    rows[2:3] = [
        timeseries("ts-a", {A1: [point(D1, price=10.0)]}),
        timeseries("ts-b", {A1: [point(D1, price=11.0)]}),
    ]
    assert mart_row(run(rows), A1)["price"] == 11.0


def test_reviews_and_keywords_deduplicate_latest_fetch_wins():
    rows = slice_payloads("US", D1, [A1])
    rows += [
        payload(
            "rv2",
            REVIEWS,
            {"reviews": [review(f"R-{A1}-20", A1, D1, rating=3, verified=False)]},
            fetched_at=T2,
        ),
        payload(
            "kw2",
            KEYWORDS,
            {
                "items": [
                    {
                        "asin": A1,
                        "keywords": [{"keyword": "vitamin c serum", "search_volume": 50000, "rank": 4}],
                    }
                ]
            },
            fetched_at=T2,
        ),
    ]
    result = run(rows)
    assert result.fact_reviews.select("review_id", "rating", "verified", "payload_id").rows() == [
        (f"R-{A1}-20", 3, False, "rv2")
    ]
    assert result.fact_keywords.select("search_volume", "rank", "payload_id").rows() == [(50000, 4, "kw2")]
    assert result.report.duplicates_dropped_by_table == {
        "mart_timeseries_daily": 0,
        "dim_asin": 0,
        "fact_reviews": 1,
        "fact_keywords": 1,
    }


# --- out-of-range values --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bad", "reason", "nulled", "flag"),
    [
        ({"bsr_root": 0}, "bsr_non_positive", ["bsr_root"], "flag_bsr_invalid"),
        ({"bsr_sub": -5}, "bsr_non_positive", ["bsr_sub"], "flag_bsr_invalid"),
        ({"rating": 5.5}, "rating_out_of_range", ["rating"], "flag_rating_invalid"),
        ({"rating": 0.0}, "rating_out_of_range", ["rating"], "flag_rating_invalid"),
        ({"price": 0.0}, "price_non_positive", ["price"], "flag_price_invalid"),
        ({"price": -3.5}, "price_non_positive", ["price"], "flag_price_invalid"),
        ({"review_count": -1}, "review_count_negative", ["review_count"], None),
        ({"new_offer_count": -2}, "offer_count_negative", ["new_offer_count"], None),
    ],
)
def test_bad_value_is_nulled_flagged_and_quarantined(bad, reason, nulled, flag):
    rows = slice_payloads("US", D1, [A1, A2], points={A1: [point(D1, **bad)], A2: [point(D1)]})
    result = run(rows)

    row = mart_row(result, A1)
    for column in nulled:
        assert row[column] is None
    untouched = {
        "price": 24.99,
        "bsr_root": 15234,
        "bsr_sub": 312,
        "rating": 4.4,
        "review_count": 1873,
        "new_offer_count": 3,
    }
    assert {k: row[k] for k in untouched if k not in nulled} == {
        k: v for k, v in untouched.items() if k not in nulled
    }
    flags = {f: row[f] for f in ("flag_bsr_invalid", "flag_rating_invalid", "flag_price_invalid")}
    assert flags == {f: f == flag for f in flags}
    assert not any(mart_row(result, A2)[f] for f in flags)

    q = result.quarantine.row(0, named=True)
    assert result.quarantine.height == 1
    assert (q["site"], q["date"], q["payload_id"], q["table_name"], q["asin"], q["reason"]) == (
        "US",
        D1,
        "US-2026-11-20-timeseries",
        "mart_timeseries_daily",
        A1,
        reason,
    )
    record = json.loads(q["record"])
    assert {k: record[k] for k in bad} == bad  # the value as received, not the nulled one
    assert q["quarantined_at"] == NOW
    assert result.report.quarantined_by_reason == {reason: 1}
    if flag:
        assert result.report.invalid_by_flag[flag] == 1


def test_several_problems_give_one_quarantine_row_per_reason():
    bad = point(D1, bsr_root=-1, bsr_sub=0, rating=9.0, price=-1.0, review_count=-4, new_offer_count=-1)
    result = run(slice_payloads("US", D1, [A1], points={A1: [bad]}))
    assert sorted(result.quarantine["reason"]) == [
        "bsr_non_positive",
        "offer_count_negative",
        "price_non_positive",
        "rating_out_of_range",
        "review_count_negative",
    ]
    row = mart_row(result, A1)
    assert [
        row[c] for c in ("price", "bsr_root", "bsr_sub", "rating", "review_count", "new_offer_count")
    ] == [None] * 6
    assert (row["flag_bsr_invalid"], row["flag_rating_invalid"], row["flag_price_invalid"]) == (
        True,
        True,
        True,
    )
    assert result.report.covered_rows == 0 and result.report.coverage == 0.0


def test_invalid_review_rating_and_keyword_values_are_quarantined():
    rows = slice_payloads("US", D1, [A1])
    rows += [
        payload(
            "rv", REVIEWS, {"reviews": [review("R-bad", A1, D1, rating=0), review("R-ok", A1, D1, rating=1)]}
        ),
        payload(
            "kw",
            KEYWORDS,
            {
                "items": [
                    {
                        "asin": A1,
                        "keywords": [
                            {"keyword": "zero rank", "search_volume": 10, "rank": 0},
                            {"keyword": "neg volume", "search_volume": -10, "rank": 3},
                        ],
                    }
                ]
            },
        ),
    ]
    result = run(rows)
    assert "R-bad" not in result.fact_reviews["review_id"].to_list()
    assert "R-ok" in result.fact_reviews["review_id"].to_list()
    assert result.fact_keywords.filter(keyword="neg volume").select("search_volume", "rank").rows() == [
        (None, 3)
    ]
    assert result.fact_keywords.filter(keyword="zero rank").is_empty()
    assert result.quarantine.select("payload_id", "table_name", "reason").sort("reason").rows() == [
        ("kw", "fact_keywords", "rank_non_positive"),
        ("rv", "fact_reviews", "rating_out_of_range"),
        ("kw", "fact_keywords", "search_volume_negative"),
    ]


def test_negative_listing_count_is_nulled_and_quarantined():
    rows = slice_payloads("US", D1, [A1])
    body = json.loads(rows[1]["body"])
    body["products"][0]["listing"]["image_count"] = -1
    rows[1]["body"] = json.dumps(body)
    result = run(rows)
    row = mart_row(result, A1)
    assert (row["image_count"], row["bullet_count"], row["category_id"]) == (None, 5, "beauty")
    assert result.quarantine.select("payload_id", "table_name", "asin", "reason").rows() == [
        ("US-2026-11-20-products", "dim_asin", A1, "listing_count_negative")
    ]
    assert json.loads(result.quarantine["record"][0])["image_count"] == -1


# --- placement ------------------------------------------------------------------------------------------
def test_asin_not_in_universe_is_quarantined():
    rows = slice_payloads("US", D1, [A1], points={A1: [point(D1)], A3: [point(D1)]})
    result = run(rows)
    assert result.mart["asin"].to_list() == [A1]
    assert result.quarantine.select("date", "asin", "reason", "payload_id").rows() == [
        (D1, A3, "asin_not_tracked", "US-2026-11-20-timeseries")
    ]
    assert result.report.coverage == 1.0


def test_point_dated_outside_the_partition_is_quarantined_under_the_slice():
    rows = slice_payloads("US", D1, [A1], points={A1: [point(D1), point(D2, price=1.0)]})
    result = run(rows)
    assert result.mart.select("date", "price").rows() == [(D1, 24.99)]
    q = result.quarantine.row(0, named=True)
    assert (q["date"], q["asin"], q["reason"]) == (D1, A1, "date_outside_partition")
    assert json.loads(q["record"])["date"] == "2026-11-21"
    assert "2026-11-21" in q["detail"]


# --- price spikes ---------------------------------------------------------------------------------------
def test_price_spike_is_flagged_and_kept_never_quarantined():
    asins = [A1, A2, A3]
    points = {A1: [point(D1, price=40.0)], A2: [point(D1, price=25.0)], A3: [point(D1, price=3.0)]}
    previous = pl.DataFrame({"site": ["US"] * 3, "asin": asins, "price": [10.0, 10.0, 10.0]})
    result = run(slice_payloads("US", D1, asins, points=points), previous_prices=previous)
    assert result.mart.select("asin", "price", "flag_price_spike").rows() == [
        (A1, 40.0, True),  # x4 > 3
        (A2, 25.0, False),  # x2.5
        (A3, 3.0, True),  # x0.3 < 1/3
    ]
    assert result.quarantine.is_empty()
    assert result.report.invalid_by_flag["flag_price_spike"] == 2


def test_price_spike_uses_the_previous_day_inside_a_batch_and_the_ratio_setting():
    rows = slice_payloads("US", D1, [A1], points={A1: [point(D1, price=10.0)]})
    rows += slice_payloads("US", D2, [A1], points={A1: [point(D2, price=25.0)]}, fetched_at=T2)
    assert mart_row(run(rows), A1, D2)["flag_price_spike"] is False
    assert mart_row(run(rows, price_spike_ratio=2.0), A1, D2)["flag_price_spike"] is True
    # previous_prices without a date is the day before the batch's first date only ...
    far_off = pl.DataFrame({"site": ["US"], "asin": [A1], "price": [1.0]})
    assert mart_row(run(rows, previous_prices=far_off), A1, D2)["flag_price_spike"] is False
    # ... and with a date, the batch's own previous day still beats it
    dated = far_off.with_columns(date=pl.lit(D1))
    assert mart_row(run(rows, previous_prices=dated), A1, D2)["flag_price_spike"] is False
    assert mart_row(run(rows), A1, D1)["flag_price_spike"] is False
    # a missing or invalid previous price never makes a spike
    unusable = pl.DataFrame({"site": ["US"], "asin": [A1], "price": [0.0]})
    assert mart_row(run(rows, previous_prices=unusable), A1, D1)["flag_price_spike"] is False
    assert mart_row(run(rows, previous_prices=far_off), A1, D1)["flag_price_spike"] is True
    with pytest.raises(ValueError, match="price_spike_ratio"):
        run(rows, price_spike_ratio=1.0)


# --- malformed input loses nothing ----------------------------------------------------------------------
def test_malformed_and_mistyped_payloads_are_quarantined_and_counted():
    rows = slice_payloads("US", D1, [A1, A2])
    good_reviews = rows[3]["body"]
    rows[3] = payload("US-2026-11-20-reviews", REVIEWS, good_reviews[: len(good_reviews) // 2])  # truncated
    rows[2] = timeseries("US-2026-11-20-timeseries", {A1: [point(D1)], A2: [point(D1, bsr_root="abc")]})
    rows.append(payload("failed", TIMESERIES, None, status=503, error="503 unavailable"))
    result = run(rows)

    assert result.fact_reviews.is_empty()
    assert mart_row(result, A2)["bsr_root"] is None and mart_row(result, A2)["price"] == 24.99
    assert result.quarantine.select("payload_id", "table_name", "asin", "reason").sort("reason").rows() == [
        ("US-2026-11-20-reviews", "fact_reviews", None, "malformed_json"),
        ("US-2026-11-20-timeseries", "mart_timeseries_daily", A2, "type_mismatch"),
    ]
    malformed = result.quarantine.filter(reason="malformed_json").row(0, named=True)
    assert malformed["record"] == good_reviews[: len(good_reviews) // 2]
    assert malformed["quarantined_at"] == T1
    report = result.report
    assert report.malformed_payloads == 1
    assert report.quarantined_by_reason == {"malformed_json": 1, "type_mismatch": 1}
    assert (report.mart_rows, report.covered_rows, report.coverage) == (2, 2, 1.0)


def test_every_input_point_is_in_the_mart_or_quarantine():
    points = {
        A1: [point(D1, bsr_root=-1), point(D1)],  # duplicate within one payload: the later record wins
        A2: [point(D1, date="garbage"), point(D2)],
        A3: [point(D1, rating=7.0)],
    }
    result = run(slice_payloads("US", D1, [A1, A2], points=points))
    accounted = (
        result.mart.height
        + result.report.duplicates_dropped
        + result.quarantine.filter(
            pl.col("reason").is_in(
                ["type_mismatch", "missing_key", "date_outside_partition", "asin_not_tracked"]
            )
        ).height
    )
    assert accounted == 5
    assert result.report.quarantined_by_reason == {
        "asin_not_tracked": 1,
        "date_outside_partition": 1,
        "type_mismatch": 1,
    }


# --- batches --------------------------------------------------------------------------------------------
def test_multi_date_multi_site_batch_equals_separate_calls():
    slices = [("US", D1, T1), ("US", D2, T2), ("DE", D1, T1), ("DE", D2, T2)]
    prices = {("US", D1): 10.0, ("US", D2): 45.0, ("DE", D1): 20.0, ("DE", D2): 21.0}
    rows_by_slice = {}
    for site, day, fetched in slices:
        points = {A1: [point(day, price=prices[site, day])], A2: [point(day, bsr_root=0)], A3: [point(day)]}
        rows = slice_payloads(site, day, [A1, A2], points=points, fetched_at=fetched)
        rows.append(
            payload(f"{site}-{day}-broken", KEYWORDS, '{"items": [', site=site, day=day, fetched_at=fetched)
        )
        rows_by_slice[site, day] = rows

    batch = run([r for rows in rows_by_slice.values() for r in rows])
    separate = {}
    for site, day, _ in slices:
        previous = separate[site, D1].mart.select("site", "asin", "price") if day == D2 else None
        separate[site, day] = run(rows_by_slice[site, day], previous_prices=previous)

    for name, table in (
        ("mart", MART_TIMESERIES_DAILY),
        ("fact_reviews", FACT_REVIEWS),
        ("fact_keywords", FACT_KEYWORDS),
        ("quarantine", QUARANTINE),
    ):
        combined = pl.concat([getattr(r, name) for r in separate.values()]).sort(
            list(table.key), nulls_last=True
        )
        assert_frame_equal(getattr(batch, name), combined)
    assert mart_row(batch, A1, D2)["flag_price_spike"] is True  # US 10 -> 45 across the two dates
    # dim_asin: the warehouse upsert keeps min(first_seen) / max(last_seen) of the separate calls
    merged = (
        pl.concat([r.dim_asin for r in separate.values()])
        .group_by("site", "asin")
        .agg(pl.col("first_seen").min(), pl.col("last_seen").max())
    )
    assert_frame_equal(
        batch.dim_asin.select("site", "asin", "first_seen", "last_seen"), merged, check_row_order=False
    )
    assert batch.report.by_slice.select("site", "date", "tracked_asins", "quarantined").rows() == [
        ("DE", D1, 2, 3),
        ("DE", D2, 2, 3),
        ("US", D1, 2, 3),
        ("US", D2, 2, 3),
    ]
    assert batch.report.quarantined_by_reason == {
        "asin_not_tracked": 4,
        "bsr_non_positive": 4,
        "malformed_json": 4,
    }
    assert batch.report.malformed_payloads == 4


# --- report ---------------------------------------------------------------------------------------------
def test_report_counts_are_exact_and_metadata_is_flat():
    points = {A1: [point(D1, price=-1.0, bsr_root=None)], A2: [point(D1, rating=6.0)]}
    rows = slice_payloads("US", D1, [A1, A2, A3], points=points)  # A3 has no point: not covered
    rows.append(timeseries("late", {A2: [point(D1, rating=6.0)]}, fetched_at=T2))
    rows.append(payload("bad", KEYWORDS, "not json"))
    report = run(rows).report

    assert report.tracked_asins == 3
    assert report.mart_rows == 2
    assert report.covered_rows == 1  # A1 lost its price and has no BSR
    assert report.coverage == pytest.approx(1 / 3)
    assert report.duplicates_dropped == 1
    assert report.invalid_by_flag == {
        "flag_bsr_invalid": 0,
        "flag_rating_invalid": 1,
        "flag_price_invalid": 1,
        "flag_price_spike": 0,
    }
    assert report.quarantined_by_reason == {
        "malformed_json": 1,
        "price_non_positive": 1,
        "rating_out_of_range": 1,
    }
    assert report.quarantined_total == 3 and report.malformed_payloads == 1
    assert report.by_slice.rows() == [("US", D1, 3, 2, 1, pytest.approx(1 / 3), 1, 3)]

    metadata = report.as_metadata()
    assert all(isinstance(v, int | float) for v in metadata.values())
    assert metadata["quarantined.rating_out_of_range"] == 1 and metadata["invalid.flag_price_invalid"] == 1
    assert metadata["coverage"] == pytest.approx(1 / 3, abs=1e-6)
    markdown = report.as_markdown()
    assert "| coverage | 33.33% |" in markdown and "| malformed_json | 1 |" in markdown
    assert "| US | 2026-11-20 | 3 | 2 | 1 | 33.33% | 1 | 3 |" in markdown


def test_empty_batch_gives_empty_tables_and_zero_coverage():
    result = run([])
    assert all(f.is_empty() for f in (result.mart, result.dim_asin, result.fact_reviews, result.quarantine))
    assert (result.report.tracked_asins, result.report.coverage) == (0, 0.0)


# --- pandera --------------------------------------------------------------------------------------------
def test_pandera_models_mirror_the_table_contracts():
    for name, model in PANDERA_MODELS.items():
        columns = model.to_schema().columns
        assert list(columns) == TABLES[name].columns, name
        assert {c: col.dtype.type for c, col in columns.items()} == TABLES[name].schema, name


def test_standardise_output_validates_and_broken_frames_are_reported():
    result = run(slice_payloads("US", D1, [A1, A2], points={A1: [point(D1, bsr_root=0)], A2: [point(D1)]}))
    for name, frame in (
        ("mart_timeseries_daily", result.mart),
        ("dim_asin", result.dim_asin),
        ("fact_reviews", result.fact_reviews),
        ("fact_keywords", result.fact_keywords),
        ("quarantine", result.quarantine),
    ):
        assert validate(name, frame) == [], name

    broken = pl.concat([result.mart, result.mart.head(1)]).with_columns(
        bsr_root=pl.when(pl.col("asin") == A2).then(-5).otherwise(pl.col("bsr_root")),
        flag_rating_invalid=pl.lit(None, pl.Boolean),
    )
    errors = validate("mart_timeseries_daily", broken)
    assert any("share their key ('site', 'date', 'asin')" in e for e in errors), errors
    assert any(
        e.startswith("mart_timeseries_daily.bsr_root: 1 value(s) fail greater_than_or_equal_to(1)")
        for e in errors
    ), errors
    assert any(e.startswith("mart_timeseries_daily.flag_rating_invalid: 3 null value(s)") for e in errors), (
        errors
    )

    schema_errors = validate(
        "fact_keywords", result.fact_keywords.drop("rank").with_columns(pl.col("date").cast(pl.Utf8))
    )
    assert "fact_keywords: missing column(s) rank" in schema_errors
    assert "fact_keywords.date: dtype is String, expected 'Date'" in schema_errors
    with pytest.raises(KeyError, match="no pandera model"):
        validate("no_such_table", result.mart)


def test_output_that_breaks_its_models_raises_a_clear_error(monkeypatch):
    monkeypatch.setattr(standardise_module, "validate", lambda name, frame: [f"{name}: broken on purpose"])
    with pytest.raises(StandardiseOutputError, match="bug in core/standardise.py"):
        run(slice_payloads("US", D1, [A1]))


# --- plausibility bounds (settings.plausibility) ----------------------------------------------------
def quarantined(result: StandardiseResult) -> list[tuple[Any, ...]]:
    return (
        result.quarantine.select("date", "payload_id", "table_name", "asin", "reason", "detail")
        .sort("date", "table_name", "asin", "reason")
        .rows()
    )


def test_absurd_point_values_are_quarantined_nulled_and_flagged():
    points = {
        A1: [point(D1, bsr_root=10**12, bsr_sub=10**12)],
        A2: [point(D1, review_count=10**12, new_offer_count=5000, rating=4.0)],
        A3: [point(D1, price=1e12)],
    }
    result = run(slice_payloads("US", D1, [A1, A2, A3], points=points))
    cols = ("bsr_root", "bsr_sub", "review_count", "new_offer_count", "price", "rating")
    flags = ("flag_bsr_invalid", "flag_rating_invalid", "flag_price_invalid", "flag_price_spike")
    assert result.mart.select("asin", *cols, *flags).rows() == [
        (A1, None, None, 1873, 3, 24.99, 4.4, True, False, False, False),
        (A2, 15234, 312, None, None, 24.99, 4.0, False, False, False, False),
        (A3, 15234, 312, 1873, 3, None, 4.4, False, False, True, False),
    ]
    ts = "US-2026-11-20-timeseries"
    assert quarantined(result) == [
        (D1, ts, "mart_timeseries_daily", A1, "implausible_value",
         "bsr_root=1000000000000 outside 1.0..20000000.0; bsr_sub=1000000000000 outside 1.0..20000000.0"),
        (D1, ts, "mart_timeseries_daily", A2, "implausible_value",
         "review_count=1000000000000 outside 0.0..5000000.0; new_offer_count=5000 outside 0.0..2000.0"),
        (D1, ts, "mart_timeseries_daily", A3, "implausible_value", "price=1000000000000.0 outside 0.01..100000.0"),
    ]  # fmt: skip
    assert json.loads(result.quarantine.filter(asin=A3)["record"][0])["price"] == 1e12
    assert result.report.quarantined_by_reason == {"implausible_value": 3}
    assert result.report.invalid_by_flag == {
        "flag_bsr_invalid": 1, "flag_rating_invalid": 0, "flag_price_invalid": 1, "flag_price_spike": 0,
    }  # fmt: skip


def test_a_negative_value_keeps_its_own_reason_only():
    result = run(slice_payloads("US", D1, [A1], points={A1: [point(D1, bsr_root=-5)]}))
    assert [r[4] for r in quarantined(result)] == ["bsr_non_positive"]


def test_price_bounds_are_per_site_currency():
    jp = slice_payloads("JP", D1, [A1], points={A1: [point(D1, price=150_000.0)]})
    us = slice_payloads("US", D1, [A1], points={A1: [point(D1, price=150_000.0)]})
    result = run(jp + us)
    assert result.mart.select("site", "price", "flag_price_invalid").rows() == [
        ("JP", 150_000.0, False),  # yen
        ("US", None, True),
    ]
    tight = PlausibilityBounds(price_by_site={"JP": (1.0, 100_000.0)})
    assert run(jp, plausibility=tight).mart.select("price", "flag_price_invalid").rows() == [(None, True)]


def test_custom_bounds_apply():
    rows = slice_payloads("US", D1, [A1], points={A1: [point(D1, bsr_root=600_000)]})
    assert mart_row(run(rows), A1)["bsr_root"] == 600_000
    row = mart_row(run(rows, plausibility=PlausibilityBounds(bsr_root=(1, 500_000))), A1)
    assert (row["bsr_root"], row["bsr_sub"], row["flag_bsr_invalid"]) == (None, 312, True)


def test_an_absurd_price_does_not_make_the_next_correct_day_a_spike():
    d3 = D1 + timedelta(days=2)
    rows = []
    for day, price, fetched in ((D1, 24.99, T1), (D2, 1e12, T1), (d3, 24.99, T2)):
        rows += slice_payloads("US", day, [A1], points={A1: [point(day, price=price)]}, fetched_at=fetched)
    assert run(rows).mart.select("date", "price", "flag_price_invalid", "flag_price_spike").rows() == [
        (D1, 24.99, False, False),
        (D2, None, True, False),
        (d3, 24.99, False, False),
    ]


def test_a_spike_is_no_reference_for_the_next_day():
    days = [D1 + timedelta(days=k) for k in range(5)]
    prices = [10.0, 100.0, 10.0, 100.0, 100.0]  # a one-day spike, then a real level change
    rows = []
    for day, price in zip(days, prices, strict=True):
        rows += slice_payloads("US", day, [A1], points={A1: [point(day, price=price)]})
    assert run(rows).mart["flag_price_spike"].to_list() == [False, True, False, True, False]
    # the previous partition's own flag counts the same way for the batch's first day
    flagged_prev = pl.DataFrame({"site": ["US"], "asin": [A1], "price": [1.0], "flag_price_spike": [True]})
    first = slice_payloads("US", D1, [A1], points={A1: [point(D1, price=10.0)]})
    assert mart_row(run(first, previous_prices=flagged_prev), A1)["flag_price_spike"] is False
    trusted = flagged_prev.with_columns(flag_price_spike=pl.lit(False))
    assert mart_row(run(first, previous_prices=trusted), A1)["flag_price_spike"] is True


def _with_listing(rows: list[dict[str, Any]], **listing: Any) -> list[dict[str, Any]]:
    body = json.loads(rows[1]["body"])
    body["products"][0]["listing"].update(listing)
    rows[1]["body"] = json.dumps(body)
    return rows


def test_missing_required_listing_fields_are_counted_never_silent():
    rows = _with_listing(slice_payloads("US", D1, [A1, A2]), bullet_count=None, title_length=None)
    result = run(rows)
    assert mart_row(result, A1)["bullet_count"] is None and mart_row(result, A2)["bullet_count"] == 5
    assert quarantined(result) == [
        (D1, "US-2026-11-20-products", "dim_asin", A1, "listing_field_missing",
         "product listing without title_length, bullet_count"),
    ]  # fmt: skip
    assert result.report.quarantined_by_reason == {"listing_field_missing": 1}


def test_implausible_listing_counts_are_nulled_and_quarantined():
    result = run(_with_listing(slice_payloads("US", D1, [A1]), image_count=4000))
    assert mart_row(result, A1)["image_count"] is None
    assert [r[4:] for r in quarantined(result)] == [
        ("implausible_value", "image_count=4000 outside 0.0..60.0")
    ]


def test_missing_and_implausible_search_volumes_are_counted():
    rows = slice_payloads("US", D1, [A1])
    rows.append(
        payload("kw2", KEYWORDS, {"items": [{"asin": A1, "keywords": [
            {"keyword": "no volume", "search_volume": None, "rank": 2},
            {"keyword": "huge volume", "search_volume": 10**12, "rank": 4}]}]})
    )  # fmt: skip
    result = run(rows)
    assert result.fact_keywords.select("keyword", "search_volume").sort("keyword").rows() == [
        ("huge volume", None), ("no volume", None), ("vitamin c serum", 48000),
    ]  # fmt: skip
    assert [r[1:5] for r in quarantined(result)] == [
        ("kw2", "fact_keywords", A1, "implausible_value"),
        ("kw2", "fact_keywords", A1, "search_volume_missing"),
    ]
    assert result.quarantine.filter(reason="implausible_value")["detail"].to_list() == [
        "keyword huge volume: search_volume=1000000000000 outside 0.0..500000000.0"
    ]


def test_plausibility_bounds_settings_validate():
    with pytest.raises(ValueError, match="low > high: price_by_site.JP"):
        PlausibilityBounds(price_by_site={"JP": (10.0, 1.0)})
    assert PlausibilityBounds().price_for("JP") == (1.0, 15_000_000.0)
    assert PlausibilityBounds().price_for("DE") == (0.01, 100_000.0)
