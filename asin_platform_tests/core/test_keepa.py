"""Keepa parser: encoding rules, the change-log daily rule, field mapping, rejects and token accounting.

Fixtures under ``fixtures/keepa_*.json`` are hand-written in the shape of Keepa's documented product
response (``Product`` / ``Response`` of keepacom/api_backend); their keepa-minute timestamps were chosen
on purpose, and the comments next to each assertion say which point produces the expected value.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from asin_platform.core.keepa import (
    DOMAIN_TO_SITE,
    KEEPA_EXTRAS_SCHEMA,
    SHIPPING_SERIES,
    SITE_TO_DOMAIN,
    CsvIndex,
    KeepaFormatError,
    daily_values,
    decode_history,
    keepa_minutes_to_utc,
    parse_keepa,
    parse_keepa_detailed,
    parse_keepa_product,
    parse_keepa_product_detailed,
    utc_to_keepa_minutes,
)
from asin_platform.core.parsed import POINTS_SCHEMA, PRODUCTS_SCHEMA, UNIVERSE_SCHEMA
from asin_platform.schemas import QUARANTINE, RAW_PAYLOADS

FIXTURES = Path(__file__).parent / "fixtures"
FETCHED = datetime(2026, 11, 13, 6, 0, tzinfo=UTC)
D = date  # short alias: the tables below are dense with dates


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def km(iso: str) -> int:
    """Keepa minutes of a UTC ISO instant (used to write readable histories in tests)."""
    return utc_to_keepa_minutes(datetime.fromisoformat(iso).replace(tzinfo=UTC))


def column(frame: pl.DataFrame, name: str, asin: str | None = None) -> dict[date, Any]:
    if asin is not None:
        frame = frame.filter(pl.col("asin") == asin)
    return dict(zip(frame["date"].to_list(), frame[name].to_list(), strict=True))


@pytest.fixture(scope="module")
def us() -> dict[str, Any]:
    return load("keepa_product_us.json")


@pytest.fixture(scope="module")
def aaa1(us: dict[str, Any]):
    """B0TESTAAA1 over 2026-10-30 .. 2026-11-12, fetched the morning after."""
    return parse_keepa_product_detailed(
        us["products"][0], "US", (D(2026, 10, 30), D(2026, 11, 12)), payload_id="p-us", fetched_at=FETCHED
    )


# ------------------------------------------------------------------------------------------------ time


def test_keepa_minutes_to_utc_matches_keepa_documented_example() -> None:
    # Keepa's Product.csv doc: "timestamp: 411180 => 1318510800000" (ms) = 2011-10-13 13:00 UTC.
    assert keepa_minutes_to_utc(411180) == datetime(2011, 10, 13, 13, 0, tzinfo=UTC)
    assert keepa_minutes_to_utc(411180).timestamp() * 1000 == 1318510800000
    assert keepa_minutes_to_utc(0) == datetime(2011, 1, 1, tzinfo=UTC)
    assert keepa_minutes_to_utc("411180") == keepa_minutes_to_utc(411180)  # buy-box history uses strings
    assert utc_to_keepa_minutes(datetime(2011, 10, 13, 13, 0, tzinfo=UTC)) == 411180


def test_keepa_minutes_expression_is_vectorised_and_utc() -> None:
    frame = pl.DataFrame({"m": [411180, None, 0]}, schema={"m": pl.Int64})
    out = frame.select(ts=keepa_minutes_to_utc(pl.col("m")))
    assert out.schema["ts"] == pl.Datetime("us", "UTC")
    assert out["ts"].to_list() == [
        datetime(2011, 10, 13, 13, 0, tzinfo=UTC),
        None,
        datetime(2011, 1, 1, tzinfo=UTC),
    ]


def test_site_domain_constants() -> None:
    assert SITE_TO_DOMAIN["UK"] == 2 and DOMAIN_TO_SITE[2] == "UK"  # Keepa's GB domain
    assert SITE_TO_DOMAIN["JP"] == 5 and 7 not in DOMAIN_TO_SITE  # 7 (China) is retired
    assert sorted(DOMAIN_TO_SITE) == [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12]


# ---------------------------------------------------------------------------------------------- decode


def test_decode_history_pairs_and_gap_markers() -> None:
    h = decode_history([411180, 4900, 411240, -1, 411300, -2, 411360, 5100])
    assert h.schema == {"ts": pl.Datetime("us", "UTC"), "value": pl.Float64}
    assert h["ts"][1] == datetime(2011, 10, 13, 14, 0, tzinfo=UTC)
    # -1 and -2 become null but stay as rows: they open gaps.
    assert h["value"].to_list() == [4900.0, None, None, 5100.0]


def test_decode_history_keeps_other_negatives_for_standardise_to_quarantine() -> None:
    assert decode_history([411180, -5])["value"].to_list() == [-5.0]


def test_decode_history_triples_for_shipping_series() -> None:
    assert CsvIndex.NEW_FBM_SHIPPING in SHIPPING_SERIES and CsvIndex.NEW not in SHIPPING_SERIES
    fbm = load("keepa_product_us.json")["products"][0]["csv"][CsvIndex.NEW_FBM_SHIPPING]
    h = decode_history(fbm, triples=True)
    # [t, 2299, 499, t2, -1, -1]: price + shipping, then no offer.
    assert h["value"].to_list() == [2798.0, None]
    assert h["ts"].to_list() == [
        datetime(2026, 11, 1, 2, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 10, 0, tzinfo=UTC),
    ]


def test_decode_history_missing_and_malformed() -> None:
    assert decode_history(None).height == 0
    with pytest.raises(KeepaFormatError, match="pairs"):
        decode_history([411180, 4900, 411240])
    with pytest.raises(KeepaFormatError, match="triples"):
        decode_history([411180, 4900, 0, 411240], triples=True)
    with pytest.raises(KeepaFormatError):
        decode_history([411180, None])


# ------------------------------------------------------------------------------------------ daily rule


def test_carry_forward_across_days_without_points() -> None:
    # One change 10 days before the window; it is still in force on every day of the window.
    h = decode_history([km("2026-10-22T00:00"), 120])
    out = daily_values(h, (D(2026, 11, 1), D(2026, 11, 3)))
    assert out["value"].to_list() == [120.0, 120.0, 120.0]


def test_days_before_first_point_are_null_and_first_day_counts() -> None:
    h = decode_history([km("2026-11-02T23:59"), 7])
    assert column(daily_values(h, (D(2026, 11, 1), D(2026, 11, 3))), "value") == {
        D(2026, 11, 1): None,
        D(2026, 11, 2): 7.0,  # 23:59 is still inside the day
        D(2026, 11, 3): 7.0,
    }


def test_midnight_point_belongs_to_the_day_it_starts() -> None:
    h = decode_history([km("2026-11-01T10:00"), 1, km("2026-11-02T00:00"), 2])
    assert daily_values(h, [D(2026, 11, 1), D(2026, 11, 2)])["value"].to_list() == [1.0, 2.0]


def test_gap_marker_opens_a_gap_until_the_next_point() -> None:
    h = decode_history(
        [km("2026-11-01T08:00"), 2599, km("2026-11-02T12:00"), -1, km("2026-11-05T09:00"), 2499]
    )
    assert column(daily_values(h, (D(2026, 11, 1), D(2026, 11, 6))), "value") == {
        D(2026, 11, 1): 2599.0,
        D(2026, 11, 2): None,  # the day ends out of stock
        D(2026, 11, 3): None,
        D(2026, 11, 4): None,
        D(2026, 11, 5): 2499.0,
        D(2026, 11, 6): 2499.0,
    }


def test_bsr_median_of_the_days_points_versus_last() -> None:
    sales = load("keepa_product_us.json")["products"][0]["csv"][CsvIndex.SALES]
    h = decode_history(sales)
    window = (D(2026, 10, 31), D(2026, 11, 6))
    median = column(daily_values(h, window, rule="median"), "value")
    last = column(daily_values(h, window, rule="last"), "value")
    assert median == {
        D(2026, 10, 31): None,  # before the first point
        D(2026, 11, 1): 1000.0,  # median(1200, 1000, 900)
        D(2026, 11, 2): 900.0,  # no points: carried forward
        D(2026, 11, 3): 800.0,  # points 800 and -1: the marker does not vote
        D(2026, 11, 4): None,  # no points, the -1 of 11-03 23:00 is in force
        D(2026, 11, 5): 700.0,
        D(2026, 11, 6): 700.0,
    }
    assert last[D(2026, 11, 1)] == 900.0 and last[D(2026, 11, 3)] is None


def test_median_of_a_day_of_only_gap_markers_is_null() -> None:
    h = decode_history([km("2026-11-01T01:00"), 500, km("2026-11-02T03:00"), -1, km("2026-11-02T09:00"), -2])
    assert daily_values(h, [D(2026, 11, 2)], rule="median")["value"].to_list() == [None]


def test_duplicate_minute_resolves_to_the_later_entry() -> None:
    t = km("2026-11-01T10:00")
    assert daily_values(decode_history([t, 5, t, 6]), [D(2026, 11, 1)])["value"].to_list() == [6.0]


def test_daily_values_days_argument_forms() -> None:
    h = decode_history([km("2026-11-01T10:00"), 1])
    ranged = daily_values(h, (D(2026, 11, 1), D(2026, 11, 4)))
    assert ranged["date"].to_list() == [D(2026, 11, 1) + timedelta(days=i) for i in range(4)]
    explicit = daily_values(h, [D(2026, 11, 4), D(2026, 11, 1)])  # a list is explicit days, sorted
    assert explicit["date"].to_list() == [D(2026, 11, 1), D(2026, 11, 4)]
    assert daily_values(decode_history(None), [D(2026, 11, 1)])["value"].to_list() == [None]
    with pytest.raises(ValueError, match="rule"):
        daily_values(h, [D(2026, 11, 1)], rule="mean")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        daily_values(h, [datetime(2026, 11, 1, tzinfo=UTC)])
    with pytest.raises(ValueError, match="before it starts"):
        daily_values(h, (D(2026, 11, 2), D(2026, 11, 1)))


# ------------------------------------------------------------------------------------- product mapping


def test_points_of_a_full_product(aaa1) -> None:
    points = aaa1.parsed.points
    assert points.schema == pl.Schema(POINTS_SCHEMA)
    assert points.height == 14 and points["date"].is_unique().all()
    assert set(points["source"]) == {"keepa"} and set(points["payload_id"]) == {"p-us"}
    price = column(points, "price")
    assert price[D(2026, 10, 30)] == pytest.approx(24.99)  # Amazon not yet listed: NEW alone
    assert price[D(2026, 11, 1)] == pytest.approx(24.99)  # min(Amazon 25.99, NEW 24.99)
    assert price[D(2026, 11, 5)] == pytest.approx(23.99)  # NEW dropped at 14:00
    assert price[D(2026, 11, 12)] == pytest.approx(27.99)  # Amazon out of stock (-1): NEW alone
    bsr = column(points, "bsr_root")
    assert [bsr[D(2026, 11, d)] for d in (1, 2, 3, 4, 5, 12)] == [1000, 900, 800, None, 700, 700]
    rating = column(points, "rating")
    assert rating[D(2026, 11, 5)] == pytest.approx(4.4) and rating[D(2026, 11, 6)] == pytest.approx(4.5)
    reviews = column(points, "review_count")
    assert reviews[D(2026, 11, 1)] == 120  # set on 10-22, ten days earlier, still in force
    assert reviews[D(2026, 11, 8)] == 120 and reviews[D(2026, 11, 9)] == 131
    offers = column(points, "new_offer_count")
    assert offers[D(2026, 11, 7)] == 3 and offers[D(2026, 11, 8)] == 5
    seller = column(points, "buybox_seller")
    assert seller[D(2026, 10, 30)] is None and seller[D(2026, 11, 1)] == "ATVPDKIKX0DER"
    assert seller[D(2026, 11, 5)] == "A2LUMORADIRECT" and seller[D(2026, 11, 12)] is None  # "-1"


def test_bsr_sub_uses_the_deepest_ranked_category(aaa1) -> None:
    # salesRanks has the root (excluded), Skin Care and Serums; Serums is deepest in categoryTree.
    bsr_sub = column(aaa1.parsed.points, "bsr_sub")
    assert bsr_sub[D(2026, 10, 31)] is None
    assert bsr_sub[D(2026, 11, 1)] == 13  # median(14, 12)
    assert bsr_sub[D(2026, 11, 3)] == 12
    assert bsr_sub[D(2026, 11, 5)] == 9  # median(9, 8, 10); the last-rule value would be 10
    assert bsr_sub[D(2026, 11, 6)] == 10
    assert set(aaa1.extras["bsr_sub_category_id"]) == {"7792528011"}
    assert set(aaa1.extras["sales_rank_reference"]) == {"3760911"}


def test_bsr_sub_falls_back_to_first_non_root_key(us: dict[str, Any]) -> None:
    product = copy.deepcopy(us["products"][0])
    product["categoryTree"] = product["categoryTree"][:1]  # no ranked key in the tree
    out = parse_keepa_product_detailed(product, "US", [D(2026, 11, 5)], payload_id="p", fetched_at=FETCHED)
    assert out.extras["bsr_sub_category_id"].to_list() == ["11060451"]
    assert out.parsed.points["bsr_sub"].to_list() == [50]


def test_products_snapshot_only_near_the_fetch(aaa1, us: dict[str, Any]) -> None:
    products = aaa1.parsed.products
    assert products.schema == pl.Schema(PRODUCTS_SCHEMA)
    # Fetched 11-13: only days within LISTING_MAX_LAG_DAYS (2) get the listing snapshot.
    assert products["date"].to_list() == [D(2026, 11, 11), D(2026, 11, 12)]
    row = products.row(0, named=True)
    title = us["products"][0]["title"]
    assert row | {"fetched_at": None} == {
        "site": "US",
        "date": D(2026, 11, 11),
        "asin": "B0TESTAAA1",
        "title": title,
        "brand": "Lumora",
        "category_id": "3760911",
        "category_path": "Beauty & Personal Care > Skin Care > Face > Serums",
        "subcategory_id": "7792528011",
        "title_length": len(title),
        "bullet_count": 5,
        "image_count": 7,
        "has_aplus": True,
        "attribute_flag_count": 3,  # video, brand store, Prime-eligible buy box
        "listed_since": D(2025, 3, 14),
        "source": "keepa",
        "payload_id": "p-us",
        "fetched_at": None,
    }
    assert row["fetched_at"] == FETCHED
    every_day = parse_keepa_product(
        us["products"][0],
        "US",
        (D(2026, 10, 30), D(2026, 11, 12)),
        payload_id="p",
        fetched_at=FETCHED,
        listing_max_lag_days=None,
    )
    assert every_day.products.height == 14


def test_universe_and_unmapped_extras(aaa1) -> None:
    universe = aaa1.parsed.universe
    assert universe.schema == pl.Schema(UNIVERSE_SCHEMA) and universe.height == 14
    assert aaa1.parsed.reviews.is_empty() and aaa1.parsed.keywords.is_empty()
    extras = aaa1.extras
    assert extras.schema == pl.Schema(KEEPA_EXTRAS_SCHEMA)
    sold = column(extras, "monthly_sold")
    assert sold[D(2026, 11, 6)] == 400 and sold[D(2026, 11, 7)] == 600  # monthlySoldHistory, last rule
    assert set(extras["tracking_since"]) == {D(2024, 6, 1)}
    assert set(extras["keepa_listed_since"]) == {D(2025, 3, 14)}


def test_product_with_missing_csv_series(us: dict[str, Any]) -> None:
    # csv[1] NEW is null and csv is only 4 long: rating, reviews, offer count are absent.
    out = parse_keepa_product(
        us["products"][1], "US", (D(2026, 11, 3), D(2026, 11, 7)), payload_id="p", fetched_at=FETCHED
    )
    assert out.rejected.is_empty()
    points = out.points
    assert points["price"].to_list() == [pytest.approx(19.99)] * 5  # Amazon alone
    assert points["bsr_root"].to_list() == [None, 45210, 45210, 45210, 51230]
    assert points["bsr_sub"].null_count() == 5  # salesRanks only has the root category
    for name in ("rating", "review_count", "new_offer_count", "buybox_seller"):
        assert points[name].null_count() == 5, name
    products = parse_keepa_product(
        us["products"][1], "US", [D(2026, 11, 12)], payload_id="p", fetched_at=FETCHED
    ).products.row(0, named=True)
    assert products["brand"] is None and products["bullet_count"] == 0
    assert products["image_count"] == 2  # from the deprecated imagesCSV
    assert products["has_aplus"] is False and products["attribute_flag_count"] == 0
    assert products["listed_since"] == D(2026, 10, 1)  # listedSince 0: trackingSince stands in


def test_no_rows_before_the_product_existed_or_after_the_fetch(us: dict[str, Any]) -> None:
    # B0TESTBBB2: trackingSince 2026-10-01 and no listedSince.
    out = parse_keepa_product(
        us["products"][1], "US", (D(2026, 9, 28), D(2026, 10, 2)), payload_id="p", fetched_at=FETCHED
    )
    assert out.universe["date"].to_list() == [D(2026, 10, 1), D(2026, 10, 2)]
    late = parse_keepa_product(
        us["products"][1], "US", (D(2026, 11, 12), D(2026, 11, 15)), payload_id="p", fetched_at=FETCHED
    )
    assert late.points["date"].to_list() == [D(2026, 11, 12), D(2026, 11, 13)]


def test_rating_zero_means_not_rated_yet(us: dict[str, Any]) -> None:
    product = copy.deepcopy(us["products"][0])
    product["csv"][CsvIndex.RATING] = [km("2026-11-01T00:00"), 0, km("2026-11-03T00:00"), 50]
    out = parse_keepa_product(
        product, "US", (D(2026, 11, 2), D(2026, 11, 3)), payload_id="p", fetched_at=FETCHED
    )
    assert out.points["rating"].to_list() == [None, 5.0]


def test_jp_prices_are_whole_yen() -> None:
    product = load("keepa_product_jp.json")["products"][0]
    out = parse_keepa_product(product, "JP", [D(2026, 11, 12)], payload_id="p-jp", fetched_at=FETCHED)
    row = out.points.row(0, named=True)
    assert row["price"] == 1980.0  # not 19.80
    assert row["rating"] == pytest.approx(4.2) and row["review_count"] == 57
    assert row["bsr_root"] == 2210 and row["bsr_sub"] == 35 and row["new_offer_count"] == 2


def test_rejects_missing_asin_site_mismatch_and_malformed_history(us: dict[str, Any]) -> None:
    no_asin = {k: v for k, v in us["products"][0].items() if k != "asin"}
    out = parse_keepa_product(no_asin, "US", [D(2026, 11, 12)], payload_id="p", fetched_at=FETCHED)
    assert out.points.is_empty() and out.rejected["reason"].to_list() == ["missing_key"]
    assert out.rejected.schema == pl.Schema(QUARANTINE.schema)

    jp = load("keepa_product_jp.json")["products"][0]
    out = parse_keepa_product(jp, "US", [D(2026, 11, 12)], payload_id="p", fetched_at=FETCHED)
    assert out.rejected["reason"].to_list() == ["site_mismatch"] and out.points.is_empty()

    broken = copy.deepcopy(us["products"][0])
    broken["csv"][CsvIndex.SALES] = broken["csv"][CsvIndex.SALES][:-1]  # odd length
    out = parse_keepa_product(broken, "US", [D(2026, 11, 12)], payload_id="p", fetched_at=FETCHED)
    rejected = out.rejected.row(0, named=True)
    assert rejected["reason"] == "malformed_history" and rejected["asin"] == "B0TESTAAA1"
    assert "csv[3]" in rejected["detail"] and out.points.is_empty()


# ------------------------------------------------------------------------------------- plausibility


@pytest.mark.parametrize(
    ("index", "bad", "detail"),
    [
        (CsvIndex.AMAZON, 1234.9, "non-integer 1234.9"),  # truncated it would read 12.34
        (CsvIndex.NEW, True, "boolean"),  # read as a number it would be 0.01
        (CsvIndex.SALES, 2**62, "beyond Keepa's range"),
        (CsvIndex.COUNT_REVIEWS, 10**12, "beyond Keepa's range"),
    ],
)
def test_implausible_history_values_are_quarantined_not_coerced(
    us: dict[str, Any], index: CsvIndex, bad: Any, detail: str
) -> None:
    product = copy.deepcopy(us["products"][0])
    product["csv"][index] = [km("2026-11-11T00:00"), bad]
    out = parse_keepa_product(product, "US", [D(2026, 11, 12)], payload_id="p-x", fetched_at=FETCHED)
    (rejected,) = out.rejected.iter_rows(named=True)
    assert rejected["reason"] == "implausible_value" and rejected["payload_id"] == "p-x"
    assert rejected["asin"] == "B0TESTAAA1" and f"csv[{int(index)}]" in rejected["detail"]
    assert detail in rejected["detail"]
    assert out.points.is_empty()  # nothing of the product's day is written from a corrupt history


def test_implausible_sales_rank_of_bsr_sub_only_nulls_bsr_sub(aaa1, us: dict[str, Any]) -> None:
    product = copy.deepcopy(us["products"][0])
    sub = aaa1.extras["bsr_sub_category_id"][0]
    product["salesRanks"] = {**product["salesRanks"], sub: [km("2026-11-11T00:00"), 3.5]}
    out = parse_keepa_product(product, "US", [D(2026, 11, 12)], payload_id="p", fetched_at=FETCHED)
    assert out.rejected["reason"].to_list() == ["implausible_value"]
    assert out.points["bsr_sub"].to_list() == [None] and out.points["bsr_root"].to_list()[0] is not None


def test_listed_since_after_the_fetch_is_quarantined_not_written(us: dict[str, Any]) -> None:
    product = copy.deepcopy(us["products"][0])
    product["listedSince"] = km("2026-12-24T00:00")  # after FETCHED (2026-11-13)
    product["trackingSince"] = km("2026-01-05T00:00")
    out = parse_keepa_product(product, "US", [D(2026, 11, 12)], payload_id="p", fetched_at=FETCHED)
    (rejected,) = out.rejected.iter_rows(named=True)
    assert rejected["reason"] == "implausible_value" and "listedSince 2026-12-24" in rejected["detail"]
    # the product's day is still written; listed_since falls back to what Keepa could vouch for
    assert out.products["listed_since"].to_list() == [D(2026, 1, 5)]
    assert out.points["date"].to_list() == [D(2026, 11, 12)]

    for bad in (2**62, 7_000_000.5, True):
        product["listedSince"] = bad
        out = parse_keepa_product(product, "US", [D(2026, 11, 12)], payload_id="p", fetched_at=FETCHED)
        assert out.rejected["reason"].to_list() == ["implausible_value"], bad
        assert out.products["listed_since"].to_list() == [D(2026, 1, 5)]


# ---------------------------------------------------------------------------------------- parse_keepa


def raw_row(payload_id: str, site: str, body: str | None, **over: Any) -> dict[str, Any]:
    row = {
        "payload_id": payload_id,
        "site": site,
        "date": D(2026, 11, 12),
        "source": "keepa",
        "endpoint": "/product",
        "request_params": json.dumps({"domain": SITE_TO_DOMAIN.get(site), "asin": "..."}),
        "status": 200,
        "attempts": 1,
        "fetched_at": FETCHED,
        "body": body,
        "payload_hash": None,
        "error": None,
        "run_id": "run-1",
    }
    return row | over


def test_parse_keepa_over_raw_payload_rows() -> None:
    text = (FIXTURES / "keepa_product_us.json").read_text(encoding="utf-8")
    raw = pl.DataFrame(
        [
            raw_row("p-us", "US", text),
            raw_row("p-jp", "JP", (FIXTURES / "keepa_product_jp.json").read_text(encoding="utf-8")),
            raw_row("p-bad", "US", '{"timestamp": 1795240800000, "products": [{"asin": "B0'),
            raw_row("p-half", "US", (FIXTURES / "keepa_product_missing_asin.json").read_text("utf-8")),
            raw_row("p-429", "US", text, status=429),  # failed requests: skipped
            raw_row("p-err", "US", text, error="read timeout after partial body"),
            raw_row("p-unified", "US", text, source="unified"),  # another parser's rows
        ],
        schema=RAW_PAYLOADS.schema,
    )
    result = parse_keepa_detailed(raw)
    parsed = result.parsed
    # Each row's partition day only: 2 US + 1 JP + 1 good product of the half-bad payload.
    assert parsed.points["date"].unique().to_list() == [D(2026, 11, 12)]
    assert sorted(parsed.universe["asin"]) == ["B0TESTAAA1", "B0TESTBBB2", "B0TESTCCC3", "B0TESTJP01"]
    assert sorted(parsed.products["asin"]) == sorted(parsed.universe["asin"])
    by_asin = {r["asin"]: r for r in parsed.points.iter_rows(named=True)}
    assert by_asin["B0TESTAAA1"]["price"] == pytest.approx(27.99)
    assert by_asin["B0TESTAAA1"]["bsr_root"] == 700 and by_asin["B0TESTAAA1"]["bsr_sub"] == 10
    assert by_asin["B0TESTJP01"]["price"] == 1980.0 and by_asin["B0TESTJP01"]["site"] == "JP"
    assert by_asin["B0TESTCCC3"]["price"] == pytest.approx(14.99)
    assert {r["payload_id"]: r["reason"] for r in parsed.rejected.iter_rows(named=True)} == {
        "p-bad": "malformed_json",
        "p-half": "missing_key",
    }
    bad = parsed.rejected.filter(pl.col("payload_id") == "p-bad").row(0, named=True)
    assert bad["table_name"] == "raw_payloads" and bad["date"] == D(2026, 11, 12)
    assert bad["record"].startswith('{"timestamp"') and bad["quarantined_at"] == FETCHED
    assert result.extras.height == 4
    assert parse_keepa(raw).points.equals(parsed.points)


def test_keepa_rows_pass_standardise_with_full_coverage() -> None:
    # Contract check: the Keepa rows are what the source-agnostic standardise step expects.
    from asin_platform.core.standardise import standardise

    raw = pl.DataFrame(
        [
            raw_row("p-us", "US", (FIXTURES / "keepa_product_us.json").read_text(encoding="utf-8")),
            raw_row("p-jp", "JP", (FIXTURES / "keepa_product_jp.json").read_text(encoding="utf-8")),
        ],
        schema=RAW_PAYLOADS.schema,
    )
    result = standardise(parse_keepa(raw), now=FETCHED)
    assert result.report.coverage == 1.0 and result.report.quarantined_total == 0
    mart = result.mart.filter(pl.col("asin") == "B0TESTAAA1").row(0, named=True)
    assert mart["price"] == pytest.approx(27.99) and mart["bsr_sub"] == 10
    assert mart["category_id"] == "3760911" and mart["image_count"] == 7


def test_parse_keepa_body_shapes_that_are_not_product_responses() -> None:
    raw = pl.DataFrame(
        [
            raw_row("p-array", "US", "[]"),
            raw_row("p-noproducts", "US", '{"tokensLeft": 5, "refillIn": 100, "refillRate": 20}'),
            raw_row("p-null", "US", None),
            raw_row("p-site", "AU", '{"products": []}'),
        ],
        schema=RAW_PAYLOADS.schema,
    )
    parsed = parse_keepa(raw)
    assert parsed.points.is_empty() and parsed.universe.is_empty()
    assert dict(parsed.rejected.select("payload_id", "reason").iter_rows()) == {
        "p-array": "unexpected_shape",  # valid JSON, not a product response
        "p-noproducts": "unexpected_shape",
        "p-null": "malformed_json",
        "p-site": "unknown_site",
    }


def test_parse_keepa_of_nothing_is_empty_but_typed() -> None:
    parsed = parse_keepa(RAW_PAYLOADS.empty())
    assert parsed.points.schema == pl.Schema(POINTS_SCHEMA) and parsed.points.is_empty()
    assert parsed.rejected.schema == pl.Schema(QUARANTINE.schema)
