"""parse_unified: stored unified-API bodies -> typed ParsedPayloads, bad input -> rejected rows.

The bodies are written by hand the way docs/upstream_api.md shows them, so a contract change shows
up here. The builders below are reused by test_standardise.py.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from asin_platform.core.parsed import POINTS_SCHEMA, PRODUCTS_SCHEMA, REVIEWS_SCHEMA
from asin_platform.core.unified import parse_unified, parse_unified_with_stats
from asin_platform.schemas import QUARANTINE, RAW_PAYLOADS

D1 = date(2026, 11, 20)
D2 = date(2026, 11, 21)
T1 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)

ASINS = "/v1/sites/{site}/asins"
PRODUCTS = "/v1/sites/{site}/products"
TIMESERIES = "/v1/sites/{site}/timeseries"
REVIEWS = "/v1/sites/{site}/reviews"
KEYWORDS = "/v1/sites/{site}/keywords"


# --- builders (contract-shaped bodies) ------------------------------------------------------------
def product(asin: str, site: str = "US", **overrides: Any) -> dict[str, Any]:
    body = {
        "asin": asin,
        "site": site,
        "title": f"Serum {asin}",
        "brand": "Lumora",
        "category_id": "beauty",
        "category_path": ["Beauty", "Skin Care", "Serums"],
        "subcategory_id": "beauty-serums",
        "listing": {
            "title_length": 142,
            "bullet_count": 5,
            "image_count": 7,
            "has_aplus": True,
            "attribute_flags": {"video": True, "size_chart": False, "brand_story": True, "prime": True},
        },
        "listed_since": "2025-03-14",
    }
    body.update(overrides)
    return body


def point(day: date, **overrides: Any) -> dict[str, Any]:
    body = {
        "date": day.isoformat(),
        "price": 24.99,
        "bsr_root": 15234,
        "bsr_sub": 312,
        "rating": 4.4,
        "review_count": 1873,
        "new_offer_count": 3,
        "buybox_seller": "Lumora Direct",
    }
    body.update(overrides)
    return body


def review(review_id: str, asin: str, day: date, **overrides: Any) -> dict[str, Any]:
    body = {"review_id": review_id, "asin": asin, "date": day.isoformat(), "rating": 5, "verified": True}
    body.update(overrides)
    return body


def payload(
    payload_id: str,
    endpoint: str,
    body: Any,
    *,
    site: str = "US",
    day: date = D1,
    fetched_at: datetime = T1,
    status: int = 200,
    error: str | None = None,
) -> dict[str, Any]:
    """One raw_payloads row; a ``str`` body is stored as is (so it can be truncated JSON)."""
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    return {
        "payload_id": payload_id,
        "site": site,
        "date": day,
        "source": "unified",
        "endpoint": endpoint,
        "request_params": json.dumps({"date": day.isoformat()}),
        "status": status,
        "attempts": 1,
        "fetched_at": fetched_at,
        "body": text,
        "payload_hash": "0" * 64,
        "error": error,
        "run_id": "test-run",
    }


def raw_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return RAW_PAYLOADS.conform(pl.DataFrame(rows, schema=RAW_PAYLOADS.schema))


def slice_payloads(
    site: str,
    day: date,
    asins: list[str],
    *,
    points: dict[str, list[dict[str, Any]]] | None = None,
    fetched_at: datetime = T1,
    prefix: str | None = None,
) -> list[dict[str, Any]]:
    """The five payloads ingestion stores for one (site, date) slice; ``points`` overrides the
    default one clean point per ASIN."""
    prefix = prefix or f"{site}-{day.isoformat()}"
    series = points if points is not None else {a: [point(day)] for a in asins}
    common = {"site": site, "day": day, "fetched_at": fetched_at}
    return [
        payload(
            f"{prefix}-asins",
            ASINS,
            {
                "site": site,
                "date": day.isoformat(),
                "total": len(asins),
                "asins": asins,
                "next_page_token": None,
            },
            **common,
        ),
        payload(
            f"{prefix}-products",
            PRODUCTS,
            {
                "site": site,
                "date": day.isoformat(),
                "products": [product(a, site) for a in asins],
                "not_found": [],
            },
            **common,
        ),
        payload(
            f"{prefix}-timeseries",
            TIMESERIES,
            {
                "site": site,
                "start": day.isoformat(),
                "end": day.isoformat(),
                "items": [{"asin": a, "site": site, "points": p} for a, p in series.items()],
                "not_found": [],
            },
            **common,
        ),
        payload(
            f"{prefix}-reviews",
            REVIEWS,
            {
                "site": site,
                "since": day.isoformat(),
                "until": day.isoformat(),
                "reviews": [review(f"R-{a}-{day:%d}", a, day) for a in asins],
                "next_page_token": None,
            },
            **common,
        ),
        payload(
            f"{prefix}-keywords",
            KEYWORDS,
            {
                "site": site,
                "date": day.isoformat(),
                "items": [
                    {
                        "asin": a,
                        "keywords": [{"keyword": "vitamin c serum", "search_volume": 48000, "rank": 7}],
                    }
                    for a in asins
                ],
                "not_found": [],
            },
            **common,
        ),
    ]


def rejected_of(raw: pl.DataFrame) -> pl.DataFrame:
    return parse_unified(raw).rejected


# --- happy path -----------------------------------------------------------------------------------
def test_happy_path_gives_exact_typed_rows():
    parsed, stats = parse_unified_with_stats(
        raw_frame(slice_payloads("US", D1, ["B0AAAAAAA1", "B0AAAAAAA2"]))
    )

    assert parsed.universe.to_dicts() == [
        {"site": "US", "date": D1, "asin": "B0AAAAAAA1", "payload_id": "US-2026-11-20-asins"},
        {"site": "US", "date": D1, "asin": "B0AAAAAAA2", "payload_id": "US-2026-11-20-asins"},
    ]
    assert parsed.products.schema == pl.Schema(PRODUCTS_SCHEMA)
    assert parsed.products.row(0, named=True) == {
        "site": "US",
        "date": D1,
        "asin": "B0AAAAAAA1",
        "title": "Serum B0AAAAAAA1",
        "brand": "Lumora",
        "category_id": "beauty",
        "category_path": "Beauty > Skin Care > Serums",
        "subcategory_id": "beauty-serums",
        "title_length": 142,
        "bullet_count": 5,
        "image_count": 7,
        "has_aplus": True,
        "attribute_flag_count": 3,
        "listed_since": date(2025, 3, 14),
        "source": "unified",
        "payload_id": "US-2026-11-20-products",
        "fetched_at": T1,
    }
    assert parsed.points.schema == pl.Schema(POINTS_SCHEMA)
    assert parsed.points.row(1, named=True) == {
        "site": "US",
        "date": D1,
        "asin": "B0AAAAAAA2",
        "price": 24.99,
        "bsr_root": 15234,
        "bsr_sub": 312,
        "rating": 4.4,
        "review_count": 1873,
        "new_offer_count": 3,
        "buybox_seller": "Lumora Direct",
        "source": "unified",
        "payload_id": "US-2026-11-20-timeseries",
        "fetched_at": T1,
    }
    assert parsed.reviews.schema == pl.Schema(REVIEWS_SCHEMA)
    assert parsed.reviews.select("asin", "review_id", "rating", "verified").rows() == [
        ("B0AAAAAAA1", "R-B0AAAAAAA1-20", 5, True),
        ("B0AAAAAAA2", "R-B0AAAAAAA2-20", 5, True),
    ]
    assert parsed.keywords.select("date", "asin", "keyword", "search_volume", "rank").rows() == [
        (D1, "B0AAAAAAA1", "vitamin c serum", 48000, 7),
        (D1, "B0AAAAAAA2", "vitamin c serum", 48000, 7),
    ]
    assert parsed.rejected.is_empty() and parsed.rejected.schema == pl.Schema(QUARANTINE.schema)
    assert stats.records == {"universe": 2, "products": 2, "points": 2, "reviews": 2, "keywords": 2}
    assert (stats.skipped_failed_fetch, stats.unusable_payloads, stats.rejected) == (0, 0, 0)


def test_single_asin_routes_parse_like_the_batch_routes():
    asin = "B0AAAAAAA1"
    single = raw_frame(
        [
            payload("p", "/v1/sites/{site}/products/{asin}", product(asin)),
            payload(
                "t",
                "/v1/sites/{site}/products/{asin}/timeseries",
                {"asin": asin, "site": "US", "points": [point(D1)]},
            ),
            payload(
                "r",
                "/v1/sites/{site}/products/{asin}/reviews",
                {
                    "site": "US",
                    "since": "2026-11-20",
                    "reviews": [review("R1", asin, D1)],
                    "next_page_token": None,
                },
            ),
            payload(
                "k",
                "/v1/sites/{site}/products/{asin}/keywords",
                {
                    "site": "US",
                    "date": "2026-11-20",
                    "asin": asin,
                    "keywords": [{"keyword": "serum", "search_volume": 10, "rank": 2}],
                },
            ),
        ]
    )
    batch = raw_frame(
        [
            payload("p", PRODUCTS, {"products": [product(asin)], "not_found": []}),
            payload("t", TIMESERIES, {"items": [{"asin": asin, "points": [point(D1)]}]}),
            payload("r", REVIEWS, {"reviews": [review("R1", asin, D1)], "next_page_token": None}),
            payload(
                "k",
                KEYWORDS,
                {
                    "items": [
                        {"asin": asin, "keywords": [{"keyword": "serum", "search_volume": 10, "rank": 2}]}
                    ]
                },
            ),
        ]
    )
    one, many = parse_unified(single), parse_unified(batch)
    for name in ("products", "points", "reviews", "keywords"):
        assert getattr(one, name).height == 1, name
        assert_frame_equal(getattr(one, name), getattr(many, name))
    assert one.rejected.is_empty()


# --- failed fetches are not bad input ----------------------------------------------------------------
def test_failed_fetch_rows_are_skipped_and_counted():
    rows = slice_payloads("US", D1, ["B0AAAAAAA1"])
    rows += [
        payload("timeout", TIMESERIES, None, status=0, error="timeout after 5 attempts"),
        payload(
            "503",
            TIMESERIES,
            '{"error": {"code": "unavailable", "message": "x"}}',
            status=503,
            error="503 unavailable",
        ),
        payload("429", KEYWORDS, '{"error": {"code": "rate_limited"}}', status=429, error=None),
    ]
    parsed, stats = parse_unified_with_stats(raw_frame(rows))
    assert parsed.rejected.is_empty()
    assert parsed.points.height == 1 and parsed.keywords.height == 1
    assert (stats.payloads, stats.skipped_failed_fetch) == (8, 3)


# --- malformed bodies -----------------------------------------------------------------------------------
def test_truncated_body_is_one_rejected_row_and_the_rest_still_parses():
    good = json.dumps({"items": [{"asin": "B0AAAAAAA1", "points": [point(D1)]}]})
    long_body = json.dumps({"items": [{"asin": f"B0{i:08d}", "points": [point(D1)] * 3} for i in range(40)]})
    truncated = long_body[:3_000]
    raw = raw_frame(
        [
            payload("good", TIMESERIES, good),
            payload("cut", TIMESERIES, truncated),
            payload("empty", REVIEWS, ""),
        ]
    )
    parsed, stats = parse_unified_with_stats(raw)
    assert parsed.points["payload_id"].to_list() == ["good"]
    rejected = parsed.rejected.sort("payload_id")
    assert rejected.select("payload_id", "table_name", "asin", "reason", "site", "date").rows() == [
        ("cut", "mart_timeseries_daily", None, "malformed_json", "US", D1),
        ("empty", "fact_reviews", None, "malformed_json", "US", D1),
    ]
    cut = rejected.row(0, named=True)
    assert cut["record"] == truncated[:2_000]
    assert cut["detail"].startswith("/v1/sites/{site}/timeseries: body is not valid JSON:")
    assert cut["quarantined_at"] == T1  # the payload's fetch time: the parser has no clock
    assert stats.unusable_payloads == 2


def test_body_still_malformed_after_client_retries_is_quarantined_not_skipped():
    # The client stores a 200 whose body stayed unusable with an error note; that body is bad
    # input, so it must reach quarantine rather than vanish into the fetch counters.
    raw = raw_frame(
        [
            payload("cut", TIMESERIES, '{"items": [{"asin": "B0AA', error="malformed JSON after 5 attempts"),
        ]
    )
    parsed, stats = parse_unified_with_stats(raw)
    assert parsed.rejected.select("payload_id", "reason").rows() == [("cut", "malformed_json")]
    assert stats.skipped_failed_fetch == 0


@pytest.mark.parametrize(
    ("endpoint", "body", "detail"),
    [
        (TIMESERIES, {"items": 5}, "'items' is int, expected a list"),
        (TIMESERIES, [1, 2], "expected a JSON object, got list"),
        (PRODUCTS, {"site": "US"}, "no 'products' key"),
        ("/v1/sites/{site}/offers", {"offers": []}, "unknown endpoint"),
    ],
)
def test_envelope_that_is_not_the_contract_is_unexpected_shape(endpoint, body, detail):
    rejected = rejected_of(raw_frame([payload("p", endpoint, body)]))
    assert rejected["reason"].to_list() == ["unexpected_shape"]
    assert detail in rejected["detail"][0]
    assert rejected["record"][0] == json.dumps(body)


# --- bad records inside valid bodies ---------------------------------------------------------------------
def test_type_mismatch_in_a_value_nulls_it_keeps_the_point_and_rejects_the_record():
    bad = point(D1, bsr_root="abc", price={"amount": 3})
    raw = raw_frame([payload("ts", TIMESERIES, {"items": [{"asin": "B0AAAAAAA1", "points": [bad]}]})])
    parsed = parse_unified(raw)
    assert parsed.points.select("asin", "price", "bsr_root", "bsr_sub", "rating").rows() == [
        ("B0AAAAAAA1", None, None, 312, 4.4)
    ]
    rejected = parsed.rejected.row(0, named=True)
    assert parsed.rejected.height == 1
    assert (rejected["reason"], rejected["asin"], rejected["payload_id"]) == (
        "type_mismatch",
        "B0AAAAAAA1",
        "ts",
    )
    assert "price=<object or list> is not a finite number" in rejected["detail"]
    assert "bsr_root=abc is not an integer" in rejected["detail"]
    assert json.loads(rejected["record"]) == {"asin": "B0AAAAAAA1", **bad}


def test_type_mismatch_in_a_key_drops_the_record():
    raw = raw_frame(
        [
            payload(
                "ts",
                TIMESERIES,
                {
                    "items": [
                        {
                            "asin": "B0AAAAAAA1",
                            "points": [point(D1), point(D1, date="2026-13-45"), point(D1, date=20261120)],
                        }
                    ]
                },
            ),
            payload(
                "rv",
                REVIEWS,
                {
                    "reviews": [
                        review("R1", "B0AAAAAAA1", D1, rating=4.5),
                        review("R2", "B0AAAAAAA1", D1, rating=300),
                    ]
                },
            ),
        ]
    )
    parsed = parse_unified(raw)
    assert parsed.points.height == 1 and parsed.reviews.is_empty()
    rejected = parsed.rejected.sort("payload_id", "detail")
    assert rejected.select("payload_id", "reason").rows() == [
        ("rv", "type_mismatch"),
        ("rv", "type_mismatch"),
        ("ts", "type_mismatch"),
        ("ts", "type_mismatch"),
    ]
    assert any("date=2026-13-45 is not a YYYY-MM-DD date" in d for d in rejected["detail"])
    assert any("rating=4.5 is not an integer" in d for d in rejected["detail"])


def test_missing_key_is_rejected_with_a_null_asin():
    raw = raw_frame(
        [
            payload(
                "ts",
                TIMESERIES,
                {
                    "items": [
                        {"site": "US", "points": [point(D1)]},
                        {"asin": "B0AAAAAAA2", "points": [{"price": 3.0}]},
                    ]
                },
            ),
            payload("pr", PRODUCTS, {"products": [{"title": "no asin"}, "not an object"]}),
        ]
    )
    parsed = parse_unified(raw)
    assert parsed.points.is_empty() and parsed.products.is_empty()
    rows = (
        parsed.rejected.sort("payload_id", "asin", "reason", nulls_last=True)
        .select("payload_id", "table_name", "asin", "reason")
        .rows()
    )
    assert rows == [
        ("pr", "dim_asin", None, "missing_key"),
        ("pr", "dim_asin", None, "type_mismatch"),
        ("ts", "mart_timeseries_daily", "B0AAAAAAA2", "missing_key"),
        ("ts", "mart_timeseries_daily", None, "missing_key"),
    ]


def test_numeric_strings_are_read_as_numbers_and_nulls_stay_null():
    raw = raw_frame(
        [
            payload(
                "ts",
                TIMESERIES,
                {
                    "items": [
                        {
                            "asin": "B0AAAAAAA1",
                            "points": [
                                point(D1, bsr_root="15234", price=None, bsr_sub=None, buybox_seller=None)
                            ],
                        }
                    ]
                },
            )
        ]
    )
    parsed = parse_unified(raw)
    assert parsed.points.select("bsr_root", "price", "bsr_sub", "buybox_seller").rows() == [
        (15234, None, None, None)
    ]
    assert parsed.rejected.is_empty()


def test_unknown_extra_fields_are_ignored_and_counted():
    plain = raw_frame(slice_payloads("US", D1, ["B0AAAAAAA1"]))
    extended_rows = slice_payloads("US", D1, ["B0AAAAAAA1"])
    body = json.loads(extended_rows[2]["body"])
    body["items"][0]["points"][0]["coupon"] = {"pct": 10}
    body["items"][0]["points"][0]["lightning_deal"] = True
    body["items"][0]["extra_item_field"] = 1
    body["served_by"] = "edge-3"
    extended_rows[2]["body"] = json.dumps(body)
    products = json.loads(extended_rows[1]["body"])
    products["products"][0]["listing"]["video_count"] = 2
    products["products"][0]["variations"] = ["a", "b"]
    extended_rows[1]["body"] = json.dumps(products)

    base = parse_unified(plain)
    extended, stats = parse_unified_with_stats(raw_frame(extended_rows))
    for name in ("universe", "products", "points", "reviews", "keywords", "rejected"):
        assert_frame_equal(getattr(extended, name), getattr(base, name))
    assert stats.unknown_fields == {"points.coupon": 1, "points.lightning_deal": 1, "products.variations": 1}


def test_non_string_universe_entries_are_rejected_not_tracked():
    raw = raw_frame([payload("a", ASINS, {"asins": ["B0AAAAAAA1", 7, None, ""], "next_page_token": None})])
    parsed = parse_unified(raw)
    assert parsed.universe["asin"].to_list() == ["B0AAAAAAA1"]
    assert parsed.rejected["reason"].to_list() == ["type_mismatch"] * 3
    assert set(parsed.rejected["table_name"]) == {"mart_timeseries_daily"}


def test_point_dates_are_kept_as_received():
    """A point for another day than the slice stays in points: standardise decides."""
    raw = raw_frame(
        [
            payload(
                "ts",
                TIMESERIES,
                {"items": [{"asin": "B0AAAAAAA1", "points": [point(D1), point(D2)]}]},
                day=D1,
            )
        ]
    )
    assert parse_unified(raw).points["date"].to_list() == [D1, D2]


# --- wiring errors raise -----------------------------------------------------------------------------------
def test_other_sources_and_missing_columns_raise():
    keepa = raw_frame([payload("k", "/product", {"products": []})]).with_columns(source=pl.lit("keepa"))
    with pytest.raises(ValueError, match="source"):
        parse_unified(keepa)
    with pytest.raises(ValueError, match="body"):
        parse_unified(raw_frame([payload("p", ASINS, {"asins": []})]).drop("body"))


def test_empty_input_gives_empty_frames():
    parsed = parse_unified(RAW_PAYLOADS.empty())
    assert all(
        getattr(parsed, n).is_empty() for n in ("universe", "products", "points", "reviews", "rejected")
    )
