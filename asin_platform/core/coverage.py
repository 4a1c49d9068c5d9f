"""What a (date, site) partition needs, counted: the arithmetic behind the blocking coverage check.

Per partition, against the ASINs the universe listed (``tracked``):

* ``core``: ASINs whose mart row carries the product core (a category from the products endpoint);
  on a Keepa partition, ASINs with a mart row (Keepa's ``/product`` answered for them): Keepa only
  knows a product's listing as of today, so the parser withholds it from days older than its lag
  (it would leak the future into a backfill) and the category is legitimately absent there;
* ``timeseries``: ASINs whose mart row carries a BSR or a price;
* ``listing``: ASINs whose mart row carries listing attributes (title length, bullets or images);
* ``reviews`` / ``keywords``: ASINs covered by a request of that kind that got a usable answer.
  Keepa has neither endpoint, so for a Keepa partition these are null ("not applicable"), never
  counted as missing.

A partition passes when core and timeseries coverage are at least ``min_coverage`` and no request
failed for good; a failed-for-good request (a raw payload row with an ``error``) fails it even when
the shares are high, with the endpoints and the number of ASINs those requests asked for. Listing,
reviews and keywords coverage are reported, not blocking: a product may legitimately have no
bullets, and reviews/keywords endpoints answer per ASIN only when there is something to say.

Pure polars, no Dagster: the check in ``checks/ingest.py`` reads the frames and calls this.
"""

from __future__ import annotations

import polars as pl

KEYS = ["site", "date"]
KEY_SCHEMA = {"site": pl.Utf8, "date": pl.Date}
# Sources without reviews or keywords endpoints: their coverage there is "not applicable".
SOURCES_WITHOUT_REVIEWS = frozenset({"keepa"})
OPTIONAL_KINDS = ("reviews", "keywords")


def endpoint_kind(endpoint: pl.Expr) -> pl.Expr:
    """reviews / keywords / other, from the endpoint route template."""
    return (
        pl.when(endpoint.str.contains("reviews"))
        .then(pl.lit("reviews"))
        .when(endpoint.str.contains("keywords"))
        .then(pl.lit("keywords"))
        .otherwise(pl.lit("other"))
    )


def requested_asins(params: pl.Expr) -> pl.Expr:
    """The ASINs a request asked for (``asins=A,B,C`` in its JSON params; empty for universe pages)."""
    asins = params.str.json_path_match("$.asins").fill_null(params.str.json_path_match("$.asin"))
    return asins.str.split(",").fill_null(pl.lit([], dtype=pl.List(pl.Utf8)))


def failed_requests(raw: pl.DataFrame) -> pl.DataFrame:
    """(site, date, failed_requests, failed_asins, failed_endpoints) of the requests that failed for
    good: a raw payload row whose ``error`` is set (the client stores one row per request after its
    last attempt). ``failed_asins`` counts the ASINs those requests asked for."""
    failed = raw.filter(pl.col("error").is_not_null()).with_columns(
        n_asins=requested_asins(pl.col("request_params")).list.len()
    )
    return failed.group_by(KEYS).agg(
        pl.len().cast(pl.Int64).alias("failed_requests"),
        pl.col("n_asins").sum().cast(pl.Int64).alias("failed_asins"),
        pl.col("endpoint").unique().sort().alias("failed_endpoints"),
    )


def answered_asins(raw: pl.DataFrame) -> pl.DataFrame:
    """(site, date, kind, asin) for every ASIN a reviews/keywords request answered usably."""
    return (
        raw.filter(pl.col("error").is_null())
        .with_columns(kind=endpoint_kind(pl.col("endpoint")), asin=requested_asins(pl.col("request_params")))
        .filter(pl.col("kind") != "other")
        .explode("asin")
        .drop_nulls("asin")
        .select(*KEYS, "kind", "asin")
        .unique()
    )


def _mart_counts(mart: pl.DataFrame, tracked: pl.DataFrame) -> pl.DataFrame:
    """(site, date) counts of the tracked ASINs' mart rows: core, timeseries, listing, rows, keepa_rows."""
    present = mart.join(tracked, on=[*KEYS, "asin"], how="semi").select(
        *KEYS,
        core=pl.col("category_id").is_not_null(),
        timeseries=pl.col("bsr_root").is_not_null() | pl.col("price").is_not_null(),
        listing=pl.any_horizontal(
            pl.col(c).is_not_null() for c in ("title_length", "bullet_count", "image_count")
        ),
        keepa=(pl.col("source") == "keepa") if "source" in mart.columns else pl.lit(False),
    )
    return present.group_by(KEYS).agg(
        pl.col("core", "timeseries", "listing").sum().cast(pl.Int64),
        pl.len().cast(pl.Int64).alias("rows"),
        pl.col("keepa").sum().cast(pl.Int64).alias("keepa_rows"),
    )


def _answered_counts(raw: pl.DataFrame, tracked: pl.DataFrame) -> pl.DataFrame:
    """(site, date, reviews, keywords): tracked ASINs a reviews / keywords request answered usably
    (a kind nobody answered is a null column)."""
    answered = (
        answered_asins(raw)
        .join(tracked, on=[*KEYS, "asin"], how="semi")
        .group_by(*KEYS, "kind")
        .agg(pl.len().cast(pl.Int64).alias("n"))
        .pivot(on="kind", index=KEYS, values="n")
    )
    for kind in OPTIONAL_KINDS:
        if kind not in answered.columns:
            answered = answered.with_columns(pl.lit(None, dtype=pl.Int64).alias(kind))
    return answered


def coverage_table(
    keys: pl.DataFrame,
    tracked: pl.DataFrame,
    mart: pl.DataFrame,
    raw: pl.DataFrame,
    *,
    min_coverage: float,
) -> pl.DataFrame:
    """One row per key in ``keys`` (site, date): counts, coverage shares, failures and ``passed``.

    ``tracked``: (site, date, asin) from the universe; ``mart``: mart rows with category_id,
    bsr_root, price, title_length, bullet_count, image_count; ``raw``: raw payload rows with
    endpoint, source, request_params, error."""
    tracked = tracked.select(*KEYS, "asin").unique()
    counts = _mart_counts(mart, tracked)
    answered = _answered_counts(raw, tracked)
    # a Keepa partition also stores the unified universe pages it used, and a ranged Keepa run stores
    # its /product answer on the range's first day only: any Keepa row, raw or mart, decides
    applicable = raw.group_by(KEYS).agg(keepa_raw=pl.col("source").is_in(list(SOURCES_WITHOUT_REVIEWS)).any())
    frame = (
        keys.select(*KEYS)
        .join(tracked.group_by(KEYS).agg(pl.len().cast(pl.Int64).alias("tracked")), on=KEYS, how="left")
        .join(counts, on=KEYS, how="left")
        .join(answered.select(*KEYS, *OPTIONAL_KINDS), on=KEYS, how="left")
        .join(applicable, on=KEYS, how="left")
        .join(failed_requests(raw), on=KEYS, how="left")
        .with_columns(
            pl.col(
                "tracked",
                "core",
                "timeseries",
                "listing",
                "rows",
                "keepa_rows",
                "failed_requests",
                "failed_asins",
            ).fill_null(0),
            pl.col("failed_endpoints").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))),
            has_reviews=~(pl.col("keepa_raw").fill_null(False) | (pl.col("keepa_rows").fill_null(0) > 0)),
        )
        .with_columns(core=pl.when(pl.col("has_reviews")).then(pl.col("core")).otherwise(pl.col("rows")))
    )

    def share(column: str) -> pl.Expr:
        return pl.when(pl.col("tracked") > 0).then(pl.col(column) / pl.col("tracked")).otherwise(0.0)

    return (
        frame.with_columns(
            [share(c).alias(f"{c}_coverage") for c in ("core", "timeseries", "listing")]
            + [
                pl.when(pl.col("has_reviews"))
                .then(share(kind).fill_null(0.0))
                .otherwise(None)
                .alias(f"{kind}_coverage")
                for kind in OPTIONAL_KINDS
            ]
        )
        .with_columns(
            coverage=pl.min_horizontal("core_coverage", "timeseries_coverage"),
        )
        .with_columns(
            passed=(pl.col("tracked") > 0)
            & (pl.col("coverage") >= min_coverage)
            & (pl.col("failed_requests") == 0)
        )
        .drop("has_reviews", "keepa_raw", "rows", "keepa_rows", *OPTIONAL_KINDS)
        .sort(KEYS)
    )
