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


# A product's listing attributes, as the parsers emit them (core/parsed.py PRODUCTS_SCHEMA, the Keepa
# parser's attribute frame): the record of their names, order and dtypes. dim_asin, the mart and
# features_daily store some of them under the same names and dtypes (test_schemas.py checks that).
LISTING_SCHEMA: dict[str, pl.DataType] = {
    "title": pl.Utf8,
    "brand": pl.Utf8,
    "category_id": pl.Utf8,
    "category_path": pl.Utf8,  # joined with " > ": "Beauty > Skin Care > Serums"
    "subcategory_id": pl.Utf8,
    "title_length": pl.Int32,
    "bullet_count": pl.Int32,
    "image_count": pl.Int32,
    "has_aplus": pl.Boolean,
    "attribute_flag_count": pl.Int32,
    "listed_since": pl.Date,
}

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

# One row per (site, target date, asin) present in the mart that day; every feature is computed
# from the calendar window ending on the target date. Units, windows and minimum data per feature:
# docs/features.md (core/features.py computes them).
FEATURES_DAILY = Table(
    "features_daily",
    {
        "site": pl.Utf8,
        "date": pl.Date,
        "asin": pl.Utf8,
        "category_id": pl.Utf8,
        "bsr_log_slope_7d": pl.Float64,  # d ln(bsr_root) / day, OLS
        "bsr_log_slope_14d": pl.Float64,
        "bsr_log_slope_30d": pl.Float64,
        "bsr_pctl": pl.Float64,  # (0, 1], 1 = best BSR of the (site, date, category)
        "bsr_pctl_change_7d": pl.Float64,
        "bsr_pctl_change_30d": pl.Float64,
        "est_sales_7d_mean": pl.Float64,  # units/day
        "est_sales_30d_mean": pl.Float64,
        "price_cv_30d": pl.Float64,  # std / mean, dimensionless
        "price_change_vs_median_30d": pl.Float64,  # price / median - 1
        "promo_flag": pl.Boolean,
        "review_velocity_7d": pl.Float64,  # reviews/day
        "review_velocity_14d": pl.Float64,
        "review_velocity_30d": pl.Float64,
        "rating_mean_30d": pl.Float64,  # stars
        "rating_change_30d": pl.Float64,
        "new_offer_count": pl.Int32,
        "new_offer_change_14d": pl.Int32,
        "kw_top10_count": pl.Int32,
        "kw_top50_count": pl.Int32,
        "kw_mean_rank_change_7d": pl.Float64,  # positions; negative = improving
        "title_length": pl.Int32,
        "bullet_count": pl.Int32,
        "image_count": pl.Int32,
        "has_aplus": pl.Boolean,
        "attribute_flag_count": pl.Int32,
        "listing_quality_score": pl.Float64,  # [0, 1]
        "age_days": pl.Int32,
        # migration 009: the product against its own history (core/history_features.py)
        "listing_change_days": pl.Int32,  # days since title/bullets/images changed, 30 = none in 30
        "image_count_change_30d": pl.Int32,
        "bullet_count_change_30d": pl.Int32,
        "title_length_change_30d": pl.Int32,
        "listing_quality_change_30d": pl.Float64,
        "bsr_log_drop_7d_prior": pl.Float64,  # ln BSR fall, week T-20..T-14 -> week T-13..T-7
        "bsr_log_z_7d_prior": pl.Float64,  # ln BSR(T) vs T-30..T-8; negative = better than usual
        "review_burst_z_7d": pl.Float64,  # 7-day review gain vs the rate of T-30..T-7
        "price_step_7d_prior": pl.Float64,  # median price T-6..T / median T-30..T-8 - 1
    },
    key=("site", "date", "asin"),
)

# Baseline Explosive Score (core/score.py): robust z per component within (site, date, category),
# site-level when the category is too small; reason = JSON of every component's {z, w, value}.
SCORE_BASELINE_DAILY = Table(
    "score_baseline_daily",
    {
        "site": pl.Utf8,
        "date": pl.Date,
        "asin": pl.Utf8,
        "category_id": pl.Utf8,
        "explosive_score": pl.Float64,
        "z_bsr_trend": pl.Float64,
        "z_est_sales": pl.Float64,
        "z_review_velocity": pl.Float64,
        "z_listing_quality": pl.Float64,
        "z_keyword_gain": pl.Float64,
        "z_price_volatility": pl.Float64,  # z of price_cv_30d; its weight is subtracted
        "scope": pl.Utf8,  # category | site: which median/MAD the z-scores used
        "reason": pl.Utf8,
        "rank_in_category": pl.Int32,  # 1 = highest score, ties broken by asin
        "rank_in_site": pl.Int32,
    },
    key=("site", "date", "asin"),
)

INGEST_TABLES = (RAW_PAYLOADS, QUARANTINE, DIM_ASIN, MART_TIMESERIES_DAILY, FACT_REVIEWS, FACT_KEYWORDS)

TABLES: dict[str, Table] = {t.name: t for t in INGEST_TABLES}


def register(table: Table) -> Table:
    """Add a table defined by a later layer (features, scores, predictions) to TABLES."""
    TABLES[table.name] = table
    return table


register(FEATURES_DAILY)
register(SCORE_BASELINE_DAILY)

# The model registry (asin_platform/storage/registry.py, issue 15): one row per trained model, shared
# by every run through the warehouse; the files live in the artifact store at ``artifact_url``. At
# most one row is promoted: what predictions use.
MODEL_REGISTRY = register(
    Table(
        "model_registry",
        {
            "version": pl.Utf8,
            "created_at": UTC_TS,
            "train_start": pl.Date,  # the training split's reference dates
            "train_end": pl.Date,
            "valid_ndcg_20": pl.Float64,  # the promotion gate: model vs baseline on validation
            "baseline_valid_ndcg_20": pl.Float64,
            "gate_passed": pl.Boolean,
            "metrics": pl.Utf8,  # JSON: validation metrics per ranker and k
            "card": pl.Utf8,  # JSON: the model card (core.model_files.model_card)
            "artifact_url": pl.Utf8,  # the version's directory: model.txt + card.json
            "promoted": pl.Boolean,
            "promoted_at": UTC_TS,
            # migration 007: the retraining's verdict (core.backtest.promotion_verdict)
            "verdict": pl.Utf8,  # accepted | rejected (null: registered before verdicts)
            "verdict_reason": pl.Utf8,
            "backtest_ndcg_20": pl.Float64,  # this model's mean NDCG@20 on the latest folds
            "compared_version": pl.Utf8,  # the promoted model it was judged against
            "compared_backtest_ndcg_20": pl.Float64,
            "backtest_folds": pl.Utf8,  # JSON: both models per fold
        },
        key=("version",),
        partitioned=False,
    )
)


# --------------------------------------------------------------------------------------------------
# pandera (polars) models: the value rules on top of the column contracts above.
#
# Each model mirrors one Table exactly (same columns and dtypes, strict: no extra columns) and adds
# what a dtype cannot say: nullability, ranges, keys. They describe the tables *after* standardise
# (out-of-range values nulled and flagged, so bsr >= 1, rating in 1..5, price > 0), and are what the
# schema-conformance asset check and standardise's self-check run. The imports sit here, not at the
# top, so this section can be appended without touching the table definitions other layers edit.
# --------------------------------------------------------------------------------------------------
from typing import Annotated  # noqa: E402

import pandera.polars as pa  # noqa: E402
from pandera.config import ValidationDepth, config_context  # noqa: E402

_UtcTs = Annotated[pl.Datetime, "us", "UTC"]
_KNOWN_SOURCES = ["unified", "keepa"]


class RawPayloadsModel(pa.DataFrameModel):
    """One stored upstream response (or failed request)."""

    payload_id: pl.Utf8
    site: pl.Utf8
    date: pl.Date
    source: pl.Utf8 = pa.Field(isin=_KNOWN_SOURCES)
    endpoint: pl.Utf8
    request_params: pl.Utf8 = pa.Field(nullable=True)
    status: pl.Int32 = pa.Field(ge=0, le=599)  # 0 = no response
    attempts: pl.Int32 = pa.Field(ge=0)
    fetched_at: _UtcTs
    body: pl.Utf8 = pa.Field(nullable=True)  # null when nothing was received
    payload_hash: pl.Utf8 = pa.Field(nullable=True)
    error: pl.Utf8 = pa.Field(nullable=True)
    run_id: pl.Utf8 = pa.Field(nullable=True)

    class Config:
        name = RAW_PAYLOADS.name
        strict = True
        unique = list(RAW_PAYLOADS.key)


class QuarantineModel(pa.DataFrameModel):
    """A rejected payload or record. site/date/payload_id/asin may be unknown (a payload for an
    unknown site, a record without an ASIN); what was rejected and why never is."""

    site: pl.Utf8 = pa.Field(nullable=True)
    date: pl.Date = pa.Field(nullable=True)
    payload_id: pl.Utf8 = pa.Field(nullable=True)
    table_name: pl.Utf8
    asin: pl.Utf8 = pa.Field(nullable=True)
    # Parsers of different sources add their own reasons, so the form is checked, not a fixed list.
    reason: pl.Utf8 = pa.Field(str_matches=r"^[a-z][a-z0-9_]*$")
    detail: pl.Utf8
    record: pl.Utf8 = pa.Field(nullable=True)
    quarantined_at: _UtcTs

    class Config:
        name = QUARANTINE.name
        strict = True
        unique = list(QUARANTINE.key)


class DimAsinModel(pa.DataFrameModel):
    site: pl.Utf8
    asin: pl.Utf8
    title: pl.Utf8 = pa.Field(nullable=True)
    brand: pl.Utf8 = pa.Field(nullable=True)
    category_id: pl.Utf8 = pa.Field(nullable=True)
    category_path: pl.Utf8 = pa.Field(nullable=True)
    subcategory_id: pl.Utf8 = pa.Field(nullable=True)
    listed_since: pl.Date = pa.Field(nullable=True)
    first_seen: pl.Date
    last_seen: pl.Date
    source: pl.Utf8 = pa.Field(isin=_KNOWN_SOURCES)

    class Config:
        name = DIM_ASIN.name
        strict = True
        unique = list(DIM_ASIN.key)

    @pa.dataframe_check
    def first_seen_not_after_last_seen(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("first_seen") <= pl.col("last_seen"))


class MartTimeseriesDailyModel(pa.DataFrameModel):
    """Exactly one row per (site, date, asin); invalid values are null with their flag set."""

    site: pl.Utf8
    date: pl.Date
    asin: pl.Utf8
    category_id: pl.Utf8 = pa.Field(nullable=True)
    subcategory_id: pl.Utf8 = pa.Field(nullable=True)
    price: pl.Float64 = pa.Field(nullable=True, gt=0)
    bsr_root: pl.Int64 = pa.Field(nullable=True, ge=1)
    bsr_sub: pl.Int64 = pa.Field(nullable=True, ge=1)
    rating: pl.Float64 = pa.Field(nullable=True, ge=1, le=5)
    review_count: pl.Int64 = pa.Field(nullable=True, ge=0)
    new_offer_count: pl.Int32 = pa.Field(nullable=True, ge=0)
    buybox_seller: pl.Utf8 = pa.Field(nullable=True)
    title_length: pl.Int32 = pa.Field(nullable=True, ge=0)
    bullet_count: pl.Int32 = pa.Field(nullable=True, ge=0)
    image_count: pl.Int32 = pa.Field(nullable=True, ge=0)
    has_aplus: pl.Boolean = pa.Field(nullable=True)
    attribute_flag_count: pl.Int32 = pa.Field(nullable=True, ge=0)
    listed_since: pl.Date = pa.Field(nullable=True)
    flag_bsr_invalid: pl.Boolean
    flag_rating_invalid: pl.Boolean
    flag_price_invalid: pl.Boolean
    flag_price_spike: pl.Boolean
    source: pl.Utf8 = pa.Field(isin=_KNOWN_SOURCES)
    payload_id: pl.Utf8
    fetched_at: _UtcTs

    class Config:
        name = MART_TIMESERIES_DAILY.name
        strict = True
        unique = list(MART_TIMESERIES_DAILY.key)

    @pa.dataframe_check
    def flagged_values_are_nulled(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A validity flag means the offending value was removed, never kept."""
        return data.lazyframe.select(
            (~pl.col("flag_price_invalid") | pl.col("price").is_null())
            & (~pl.col("flag_rating_invalid") | pl.col("rating").is_null())
            & (~pl.col("flag_bsr_invalid") | pl.col("bsr_root").is_null() | pl.col("bsr_sub").is_null())
        )


class FactReviewsModel(pa.DataFrameModel):
    site: pl.Utf8
    date: pl.Date
    asin: pl.Utf8
    review_id: pl.Utf8
    rating: pl.Int8 = pa.Field(ge=1, le=5)
    verified: pl.Boolean = pa.Field(nullable=True)
    payload_id: pl.Utf8

    class Config:
        name = FACT_REVIEWS.name
        strict = True
        unique = list(FACT_REVIEWS.key)


class FactKeywordsModel(pa.DataFrameModel):
    site: pl.Utf8
    date: pl.Date
    asin: pl.Utf8
    keyword: pl.Utf8
    search_volume: pl.Int64 = pa.Field(nullable=True, ge=0)
    rank: pl.Int32 = pa.Field(ge=1)
    payload_id: pl.Utf8

    class Config:
        name = FACT_KEYWORDS.name
        strict = True
        unique = list(FACT_KEYWORDS.key)


PANDERA_MODELS: dict[str, type[pa.DataFrameModel]] = {
    RAW_PAYLOADS.name: RawPayloadsModel,
    QUARANTINE.name: QuarantineModel,
    DIM_ASIN.name: DimAsinModel,
    MART_TIMESERIES_DAILY.name: MartTimeseriesDailyModel,
    FACT_REVIEWS.name: FactReviewsModel,
    FACT_KEYWORDS.name: FactKeywordsModel,
}


def _describe_failures(table_name: str, failures: pl.DataFrame) -> list[str]:
    """One readable line per (column, check) from pandera's failure_cases frame."""
    grouped = (
        failures.with_columns(pl.col("failure_case").cast(pl.Utf8), pl.col("column").fill_null(table_name))
        .group_by("schema_context", "column", "check", maintain_order=True)
        .agg(
            n=pl.len(),
            cases=pl.col("failure_case").head(3),
            rows=pl.col("index").drop_nulls().head(5),
        )
    )
    lines = []
    for context, column, check, n, cases, rows in grouped.iter_rows():
        where = f" (rows {rows})" if rows else ""
        # Row-level failures carry the whole row as JSON: keep the message readable.
        shown = ", ".join("null" if c is None else (c if len(c) <= 160 else c[:160] + "...") for c in cases)
        if check == "column_in_dataframe":
            lines.append(f"{table_name}: missing column(s) {shown}")
        elif check == "column_in_schema":
            lines.append(f"{table_name}: unexpected column(s) {shown}")
        elif check.startswith("dtype("):
            lines.append(f"{table_name}.{column}: dtype is {shown}, expected {check[len('dtype(') : -1]}")
        elif check == "not_nullable":
            lines.append(f"{table_name}.{column}: {n} null value(s){where}")
        elif check in ("multiple_fields_uniqueness", "field_uniqueness"):
            key = TABLES[table_name].key if table_name in TABLES else ()
            lines.append(
                f"{table_name}: {n} row(s) share their key {key} with another row{where}, e.g. {shown}"
            )
        elif context == "DataFrameSchema":
            lines.append(f"{table_name}: {n} row(s) fail {check}{where}, e.g. {shown}")
        else:
            lines.append(f"{table_name}.{column}: {n} value(s) fail {check}{where}, e.g. {shown}")
    return lines


def validate(table_name: str, frame: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """Check ``frame`` against the pandera model of ``table_name``; readable errors, [] when valid.

    Validation is lazy (every failure is reported, not just the first) and always checks the data,
    not only the schema, whatever ``PANDERA_VALIDATION_DEPTH`` says. Raises ``KeyError`` for a table
    without a model: asking is a wiring error, not a data error.
    """
    if table_name not in PANDERA_MODELS:
        raise KeyError(f"no pandera model for table {table_name!r}; known: {sorted(PANDERA_MODELS)}")
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            PANDERA_MODELS[table_name].validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            return _describe_failures(table_name, exc.failure_cases)
        except pa.errors.SchemaError as exc:  # raised eagerly by a few schema-level problems
            return [f"{table_name}: {exc}"]
    return []
