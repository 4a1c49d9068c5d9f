"""Column contracts of every warehouse table: the single source of column truth.

Each table is a polars schema (column -> dtype, in storage order) plus its key. The DDL under
``asin_platform/sql/`` mirrors these; ``asin_platform_tests/test_schemas.py`` checks that they agree.
Partitioned tables carry ``site`` and ``date``: writing a partition replaces exactly that slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class Table:
    name: str
    schema: dict[str, pl.DataType]
    key: tuple[str, ...]
    partitioned: bool = True  # has site + date and is written slice by slice

    @property
    def columns(self) -> list[str]:
        return list(self.schema)

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Select the table's columns in order, cast to its dtypes (missing columns -> null)."""
        return frame.select(
            [
                (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
                for c, t in self.schema.items()
            ]
        )


RAW_PAYLOADS = Table(
    "raw_payloads",
    {
        "payload_id": pl.Utf8,  # sha256 of (source, endpoint, params, fetched_at, attempt)
        "site": pl.Utf8,
        "date": pl.Date,
        "source": pl.Utf8,  # unified | keepa
        "endpoint": pl.Utf8,  # route template, e.g. /v1/sites/{site}/timeseries
        "request_params": pl.Utf8,  # JSON object of query params (never the token)
        "status": pl.Int32,  # HTTP status of the last attempt; 0 = no response (timeout)
        "attempts": pl.Int32,
        "fetched_at": UTC_TS,
        "body": pl.Utf8,  # response body as received (may be malformed)
        "payload_hash": pl.Utf8,  # sha256 of body
        "error": pl.Utf8,  # why the request did not yield a usable body, else null
        "run_id": pl.Utf8,
    },
    key=("payload_id",),
)

QUARANTINE = Table(
    "quarantine",
    {
        "site": pl.Utf8,
        "date": pl.Date,
        "payload_id": pl.Utf8,
        "table_name": pl.Utf8,  # the table the record was meant for
        "asin": pl.Utf8,
        "reason": pl.Utf8,  # machine-readable: malformed_json, bsr_non_positive, ...
        "detail": pl.Utf8,  # human-readable explanation
        "record": pl.Utf8,  # the offending record (or body excerpt) as JSON text
        "quarantined_at": UTC_TS,
    },
    key=("site", "date", "payload_id", "table_name", "asin", "reason"),
)

DIM_ASIN = Table(
    "dim_asin",
    {
        "site": pl.Utf8,
        "asin": pl.Utf8,
        "title": pl.Utf8,
        "brand": pl.Utf8,
        "category_id": pl.Utf8,
        "category_path": pl.Utf8,  # "Beauty > Skin Care > Serums"
        "subcategory_id": pl.Utf8,
        "listed_since": pl.Date,
        "first_seen": pl.Date,
        "last_seen": pl.Date,
        "source": pl.Utf8,
    },
    key=("site", "asin"),
    partitioned=False,
)

MART_TIMESERIES_DAILY = Table(
    "mart_timeseries_daily",
    {
        "site": pl.Utf8,
        "date": pl.Date,
        "asin": pl.Utf8,
        "category_id": pl.Utf8,
        "subcategory_id": pl.Utf8,
        "price": pl.Float64,  # currency units of the site
        "bsr_root": pl.Int64,
        "bsr_sub": pl.Int64,
        "rating": pl.Float64,  # stars 1..5
        "review_count": pl.Int64,
        "new_offer_count": pl.Int32,
        "buybox_seller": pl.Utf8,
        "title_length": pl.Int32,
        "bullet_count": pl.Int32,
        "image_count": pl.Int32,
        "has_aplus": pl.Boolean,
        "attribute_flag_count": pl.Int32,
        "listed_since": pl.Date,
        # validity flags: the offending value is nulled and the original row quarantined
        "flag_bsr_invalid": pl.Boolean,
        "flag_rating_invalid": pl.Boolean,
        "flag_price_invalid": pl.Boolean,
        # kept value, flagged: price moved by more than price_spike_ratio vs the previous day
        "flag_price_spike": pl.Boolean,
        "source": pl.Utf8,
        "payload_id": pl.Utf8,
        "fetched_at": UTC_TS,
    },
    key=("site", "date", "asin"),
)

FACT_REVIEWS = Table(
    "fact_reviews",
    {
        "site": pl.Utf8,
        "date": pl.Date,  # review date
        "asin": pl.Utf8,
        "review_id": pl.Utf8,
        "rating": pl.Int8,
        "verified": pl.Boolean,
        "payload_id": pl.Utf8,
    },
    key=("site", "asin", "review_id"),
)

FACT_KEYWORDS = Table(
    "fact_keywords",
    {
        "site": pl.Utf8,
        "date": pl.Date,
        "asin": pl.Utf8,
        "keyword": pl.Utf8,
        "search_volume": pl.Int64,
        "rank": pl.Int32,  # organic position, 1 = top
        "payload_id": pl.Utf8,
    },
    key=("site", "date", "asin", "keyword"),
)

INGEST_TABLES = (RAW_PAYLOADS, QUARANTINE, DIM_ASIN, MART_TIMESERIES_DAILY, FACT_REVIEWS, FACT_KEYWORDS)

TABLES: dict[str, Table] = {t.name: t for t in INGEST_TABLES}


def register(table: Table) -> Table:
    """Add a table defined by a later layer (features, scores, predictions) to TABLES."""
    TABLES[table.name] = table
    return table
