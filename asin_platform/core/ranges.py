"""Range payloads: a ``raw_payloads`` row whose request covered more days than the row's own date (pure).

A ranged run asks the history endpoints (unified ``timeseries`` ``start..end``, ``reviews``
``since..until``) once for the whole run of days and stores each response ONCE, in the partition of
the range's first day, its range in ``request_params`` as sent (docs/architecture.md, "Range
payloads"). From a row's params this module derives the days it covers (``with_coverage``), which
stored range payloads a partition's rebuild needs (``covering``), which ones a re-fetch must keep
(``to_carry``), and clips what a range payload parsed into to the slice being built (``clip``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import polars as pl

from asin_platform.core.parsed import ParsedPayloads

# The unified contract's longest timeseries range (docs/upstream_api.md, "Daily timeseries"): a range
# payload never covers more, so a rebuild looks back at most this far for the payloads covering it.
MAX_RANGE_DAYS = 400


def _param(name: str) -> pl.Expr:
    return pl.col("request_params").str.json_path_match(f"$.{name}").str.to_date(strict=False)


def _covers(i: int) -> pl.Expr:
    return (
        pl.col("request_params").str.json_path_match("$.covers").str.split("..").list.get(i, null_on_oob=True)
    ).str.to_date(strict=False)


def with_coverage(raw: pl.DataFrame) -> pl.DataFrame:
    """``raw`` plus ``cover_start`` / ``cover_end``: the days each row's request covered (its own
    ``date`` for a day request; ``start..end`` or ``since..until`` for a unified history request;
    ``covers`` = ``first..last``, stored by the client, for a Keepa range request)."""
    first = pl.coalesce(_param("start"), _param("since"), _covers(0))
    last = pl.coalesce(_param("end"), _param("until"), _covers(1), first)
    return raw.with_columns(
        cover_start=pl.coalesce(first, pl.col("date")),
        cover_end=pl.coalesce(last, pl.col("date")),
    )


def range_payload_ids(raw: pl.DataFrame) -> pl.Series:
    """``payload_id`` of the rows whose request covered more than one day."""
    covered = with_coverage(raw)
    return covered.filter(pl.col("cover_start") != pl.col("cover_end"))["payload_id"]


def covering(raw: pl.DataFrame, start: date) -> pl.DataFrame:
    """Range payloads stored before ``start`` whose range reaches ``start`` or later: a rebuild of a
    slice beginning at ``start`` needs them (their rows for its days come from nowhere else)."""
    return (
        with_coverage(raw)
        .filter(
            (pl.col("date") < start)
            & (pl.col("cover_end") >= start)
            & (pl.col("cover_start") != pl.col("cover_end"))
        )
        .drop("cover_start", "cover_end")
    )


def to_carry(stored: pl.DataFrame, refetched: Iterable[date]) -> pl.DataFrame:
    """Stored range payloads that a run re-fetching the days ``refetched`` must write back when it
    replaces their partition: those covering a day the run does not re-fetch (those days have no
    other source). A range payload wholly inside the run's days is superseded and dropped."""
    days = pl.DataFrame({"_day": sorted(set(refetched))}, schema={"_day": pl.Date})
    ranged = with_coverage(stored).filter(pl.col("cover_start") != pl.col("cover_end"))
    if ranged.is_empty():
        return stored.clear()
    uncovered = (
        ranged.select("payload_id", _day=pl.date_ranges("cover_start", "cover_end"))
        .explode("_day")
        .join(days, on="_day", how="anti")
        .select("payload_id")
        .unique()
    )
    return stored.filter(pl.col("payload_id").is_in(uncovered["payload_id"].implode()))


def clip(parsed: ParsedPayloads, raw: pl.DataFrame, start: date, end: date) -> ParsedPayloads:
    """What range payloads parsed into, cut to the slice ``start..end`` being built.

    A range payload answers for every day of its range and for every ASIN of its batches (the union
    of the range's universes), so its points and reviews outside the slice belong to other partitions,
    and those of an ASIN on a day it was not tracked were never asked for by that day: both are left
    out, not quarantined. Its rejected records are filed under the payload's own date (its range's
    first day), so they are kept only when that day is in the slice. Rows of day payloads are not
    touched (standardise judges them as before)."""
    ranged = range_payload_ids(raw).implode()
    from_range = pl.col("payload_id").is_in(ranged)
    in_window = pl.col("date").is_between(start, end)
    tracked = parsed.universe.select("site", "date", "asin").unique().with_columns(_tracked=pl.lit(True))

    def keep(frame: pl.DataFrame) -> pl.DataFrame:
        marked = frame.join(tracked, on=["site", "date", "asin"], how="left", maintain_order="left")
        return marked.filter(~from_range | (in_window & pl.col("_tracked").fill_null(False))).drop("_tracked")

    return ParsedPayloads(
        universe=parsed.universe,
        products=parsed.products,
        points=keep(parsed.points),
        reviews=keep(parsed.reviews),
        keywords=parsed.keywords,
        rejected=parsed.rejected.filter(~from_range | in_window),
    )
