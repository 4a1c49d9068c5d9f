"""core.ranges: which days a stored payload covers, which range payloads a rebuild needs and a
re-fetch keeps; resources.upstream.ranged.contiguous_runs: how a run's days become ranges."""

from __future__ import annotations

import json
from datetime import date, timedelta

import polars as pl

from asin_platform.core import ranges
from asin_platform.resources.upstream.ranged import contiguous_runs

D = date(2025, 3, 10)


def _raw(*rows: tuple[str, date, dict[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "payload_id": [r[0] for r in rows],
            "date": [r[1] for r in rows],
            "request_params": [json.dumps(r[2]) for r in rows],
        },
        schema={"payload_id": pl.Utf8, "date": pl.Date, "request_params": pl.Utf8},
    )


RAW = _raw(
    ("universe", D, {"date": str(D), "page_size": "1000"}),
    ("series", D, {"asins": "A,B", "start": str(D), "end": str(D + timedelta(days=4))}),
    ("reviews", D, {"asins": "A,B", "since": str(D), "until": str(D + timedelta(days=4))}),
    ("series-day", D, {"asins": "A,B", "start": str(D), "end": str(D)}),
    ("reviews-default", D, {"asins": "A", "since": str(D)}),
    ("keepa", D, {"domain": "1", "asin": "A", "covers": f"{D}..{D + timedelta(days=2)}"}),
)


def test_with_coverage_reads_every_kind_of_range() -> None:
    covered = ranges.with_coverage(RAW).select("payload_id", "cover_start", "cover_end").rows()
    assert covered == [
        ("universe", D, D),
        ("series", D, D + timedelta(days=4)),
        ("reviews", D, D + timedelta(days=4)),
        ("series-day", D, D),
        ("reviews-default", D, D),  # until defaults to since
        ("keepa", D, D + timedelta(days=2)),
    ]
    assert sorted(ranges.range_payload_ids(RAW).to_list()) == ["keepa", "reviews", "series"]


def test_covering_names_the_range_payloads_a_later_slice_needs() -> None:
    assert sorted(ranges.covering(RAW, D + timedelta(days=3))["payload_id"]) == ["reviews", "series"]
    assert sorted(ranges.covering(RAW, D + timedelta(days=1))["payload_id"]) == ["keepa", "reviews", "series"]
    assert ranges.covering(RAW, D + timedelta(days=5)).is_empty()
    assert ranges.covering(RAW, D).is_empty()  # stored in the slice itself: read with it


def test_to_carry_keeps_ranges_that_cover_days_the_run_does_not_refetch() -> None:
    assert sorted(ranges.to_carry(RAW, [D])["payload_id"]) == ["keepa", "reviews", "series"]
    three = [D + timedelta(days=i) for i in range(3)]
    assert sorted(ranges.to_carry(RAW, three)["payload_id"]) == ["reviews", "series"]
    five = [D + timedelta(days=i) for i in range(5)]
    assert ranges.to_carry(RAW, five).is_empty()


def test_contiguous_runs_split_at_gaps_and_at_the_longest_range() -> None:
    days = [D + timedelta(days=i) for i in (0, 1, 2, 5, 6)]
    assert contiguous_runs(reversed(days)) == [days[:3], days[3:]]
    assert contiguous_runs(days, max_days=2) == [days[:2], days[2:3], days[3:]]
    assert contiguous_runs([]) == []
