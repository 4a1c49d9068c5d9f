"""Parse stored unified-API responses (``raw_payloads`` rows) into :class:`ParsedPayloads`.

The body of every successful response is decoded once per payload (``json.loads``: the only Python
loop, and it runs over payloads, ~1 per 100 ASINs, not over rows). The records found inside are then
turned into columns and typed with polars expressions, so a value of the wrong type is detected
column-wise: a value that was present in the JSON but is null after the typed cast is a mismatch.

What happens to bad input (nothing is dropped silently, see ``docs/upstream_api.md``):

* rows with ``status != 200`` are failed fetches, already counted by the fetch report: they are
  skipped and only counted in :class:`ParseStats`. A 200 whose body the client still found unusable
  after its retries (``error`` says "malformed JSON ...") IS input: it is parsed, so the bad body
  reaches quarantine instead of vanishing into a counter;
* a body that is not JSON (truncated, empty) -> one ``rejected`` row, reason ``malformed_json``,
  whose ``record`` is the first 2,000 characters of the body;
* valid JSON whose envelope is not the contract's (``items`` not a list, an array where an object
  is expected) -> one ``rejected`` row, reason ``unexpected_shape``;
* a record without a required key (``asin``, a point's ``date``, ...) or with ``null`` there ->
  ``missing_key``; the record is dropped because it cannot be placed on a key;
* a value whose JSON text cannot be read as the contract type (``bsr_root: "abc"``, ``date:
  "yesterday"``, an object where a number belongs, a non-finite float) -> ``type_mismatch``. A bad
  *key* field drops the record; a bad *value* field is nulled and the record kept, so one broken
  field does not cost the row its other signals (coverage). Either way the original record JSON is
  in ``rejected``.

Scalars are read through their JSON text, so a number sent as a numeric string (``"15234"``) is
accepted for a numeric field, and a string field accepts any scalar; objects and arrays are never
accepted where a scalar belongs. Unknown extra fields are ignored as the contract requires and
counted per record kind in :attr:`ParseStats.unknown_fields`.

Every parsed row carries the ``site`` of the raw row it came from (the slice it was fetched for),
not the ``site`` echoed in the body. Products and keywords take the raw row's ``date`` (they are
requested for one day); points and reviews keep their own ``date`` (standardise decides what to do
with a point that is outside the slice it was fetched for). ``rejected`` rows carry the raw row's
``site``/``date`` (so they are written with that slice) and the payload's ``fetched_at`` as
``quarantined_at``, which keeps the parser deterministic (no clock).

Modules: this one routes payloads, decodes bodies and assembles the result;
``core/unified_envelope.py`` walks a body's envelope to its records; ``core/unified_records.py``
holds each record kind's fields and types the collected records.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain

import polars as pl

from asin_platform.core.parsed import (
    KEYWORDS_SCHEMA,
    POINTS_SCHEMA,
    PRODUCTS_SCHEMA,
    REVIEWS_SCHEMA,
    UNIVERSE_SCHEMA,
    ParsedPayloads,
)
from asin_platform.core.unified_envelope import Rejects, ShapeError, walk_body
from asin_platform.core.unified_records import (
    KEYWORD_FIELDS,
    KNOWN_KEYS,
    PARENT_ASIN,
    POINT_FIELDS,
    PRODUCT_FIELDS,
    REVIEW_FIELDS,
    Collected,
    record_json,
    type_records,
)
from asin_platform.schemas import (
    DIM_ASIN,
    FACT_KEYWORDS,
    FACT_REVIEWS,
    MART_TIMESERIES_DAILY,
    QUARANTINE,
    RAW_PAYLOADS,
)

SOURCE = "unified"
BODY_EXCERPT_CHARS = 2_000

# Route templates (or concrete paths) -> record kind. Single-ASIN variants share the batch kind.
_ROUTES: tuple[tuple[str, str], ...] = (
    (r"^/v1/sites/[^/]+/asins/?$", "asins"),
    (r"^/v1/sites/[^/]+/products/?$", "products"),
    (r"^/v1/sites/[^/]+/products/[^/]+/?$", "products"),
    (r"^/v1/sites/[^/]+/(products/[^/]+/)?timeseries/?$", "timeseries"),
    (r"^/v1/sites/[^/]+/(products/[^/]+/)?reviews/?$", "reviews"),
    (r"^/v1/sites/[^/]+/(products/[^/]+/)?keywords/?$", "keywords"),
)
_SINGLE_ASIN = r"^/v1/sites/[^/]+/products/[^/]+(/[a-z]+)?/?$"

# The table each kind feeds; that is the quarantine ``table_name`` of its rejects. The universe is
# the row set of the mart (coverage is measured against it), so its rejects are filed there.
TARGET_TABLE: dict[str, str] = {
    "asins": MART_TIMESERIES_DAILY.name,
    "products": DIM_ASIN.name,
    "timeseries": MART_TIMESERIES_DAILY.name,
    "reviews": FACT_REVIEWS.name,
    "keywords": FACT_KEYWORDS.name,
    "unknown": RAW_PAYLOADS.name,
}


@dataclass(frozen=True)
class ParseStats:
    """Counts of one parse, for the materialisation metadata next to the quality report."""

    payloads: int  # raw rows given
    skipped_failed_fetch: int  # status != 200: counted by the fetch report already
    unusable_payloads: int  # malformed_json + unexpected_shape
    records: dict[str, int]  # parsed rows per kind (universe, products, points, reviews, keywords)
    rejected: int  # rejected rows (payload- and record-level)
    not_found: int  # ASINs the upstream listed in ``not_found``
    unknown_fields: dict[str, int] = field(default_factory=dict)  # "points.promo" -> records with it

    def as_metadata(self) -> dict[str, int]:
        """Flat ``{name: int}`` for Dagster metadata."""
        flat = {
            "payloads": self.payloads,
            "skipped_failed_fetch": self.skipped_failed_fetch,
            "unusable_payloads": self.unusable_payloads,
            "rejected": self.rejected,
            "not_found": self.not_found,
        }
        flat.update({f"records.{kind}": n for kind, n in self.records.items()})
        flat.update({f"unknown_field.{name}": n for name, n in self.unknown_fields.items()})
        return flat


def _routed(raw: pl.DataFrame) -> pl.DataFrame:
    """The usable (status 200) payloads, numbered (``_p``), with their record kind, whether the route
    is a single-ASIN one, and the table their rejects are filed under.

    Raises ``ValueError`` when ``raw`` lacks RAW_PAYLOADS columns or holds another source's rows."""
    missing_cols = [c for c in RAW_PAYLOADS.columns if c not in raw.columns and c not in ("run_id",)]
    if missing_cols:
        raise ValueError(f"parse_unified: raw payloads lack column(s) {missing_cols}")
    raw = RAW_PAYLOADS.conform(raw)
    other = raw.filter(pl.col("source") != SOURCE)["source"].unique().to_list()
    if other:
        raise ValueError(f"parse_unified: got payloads of source(s) {other}; route them to their parser")
    kind_expr = pl.lit("unknown")
    for pattern, kind in reversed(_ROUTES):
        kind_expr = pl.when(pl.col("endpoint").str.contains(pattern)).then(pl.lit(kind)).otherwise(kind_expr)
    return (
        raw.filter(pl.col("status") == 200)
        .with_row_index("_p")
        .with_columns(
            _kind=kind_expr,
            _single=pl.col("endpoint").str.contains(_SINGLE_ASIN),
            _table=kind_expr.replace_strict(TARGET_TABLE, return_dtype=pl.Utf8),
        )
    )


@dataclass
class _Walked:
    """What decoding and walking every payload's body found."""

    collected: dict[str, Collected] = field(
        default_factory=lambda: {name: Collected() for name in ("products", "points", "reviews", "keywords")}
    )
    universe: Collected = field(default_factory=Collected)
    rejects: Rejects = field(default_factory=Rejects)
    not_found: int = 0
    unusable: int = 0


def _walk_payloads(payloads: pl.DataFrame) -> _Walked:
    """The one Python loop: decode each payload's body and walk its envelope."""
    walked = _Walked()
    rejects = walked.rejects
    for p, kind, single, body, endpoint in payloads.select(
        "_p", "_kind", "_single", "body", "endpoint"
    ).iter_rows():
        if kind == "unknown":
            rejects.add(
                p, "unexpected_shape", f"unknown endpoint {endpoint!r}", (body or "")[:BODY_EXCERPT_CHARS]
            )
            walked.unusable += 1
            continue
        try:
            doc = json.loads(body) if body is not None else None
            if doc is None:
                raise ValueError("empty body (null)")
        except ValueError as exc:  # JSONDecodeError is a ValueError
            rejects.add(
                p,
                "malformed_json",
                f"{endpoint}: body is not valid JSON: {exc}",
                (body or "")[:BODY_EXCERPT_CHARS],
            )
            walked.unusable += 1
            continue
        try:
            walked.not_found += walk_body(kind, single, doc, p, walked.collected, walked.universe, rejects)
        except ShapeError as exc:
            rejects.add(p, "unexpected_shape", f"{endpoint}: {exc}", (body or "")[:BODY_EXCERPT_CHARS])
            walked.unusable += 1
    return walked


def _type_kinds(
    collected: dict[str, Collected], context: pl.DataFrame
) -> tuple[dict[str, pl.DataFrame], list[pl.DataFrame], Counter[str]]:
    """Each record kind typed: its frame, its rejected records (with their JSON), and the unknown
    fields seen per kind."""
    common = {
        "site": pl.col("site"),
        "source": pl.col("source"),
        "payload_id": pl.col("payload_id"),
        "fetched_at": pl.col("fetched_at"),
    }
    specs = {
        "products": (PRODUCT_FIELDS, PRODUCTS_SCHEMA, {**common, "date": pl.col("_slice_date")}),
        "points": ((PARENT_ASIN, *POINT_FIELDS), POINTS_SCHEMA, common),
        "reviews": (REVIEW_FIELDS, REVIEWS_SCHEMA, common),
        "keywords": (
            (PARENT_ASIN, *KEYWORD_FIELDS),
            KEYWORDS_SCHEMA,
            {**common, "date": pl.col("_slice_date")},
        ),
    }
    frames: dict[str, pl.DataFrame] = {}
    record_rejects: list[pl.DataFrame] = []
    unknown_fields: Counter[str] = Counter()
    for name, (fields, schema, extra) in specs.items():
        got = collected[name]
        frame, rejected = type_records(name, got, fields, context, schema, extra)
        frames[name] = frame
        if len(rejected):
            indices = rejected["_i"].to_list()
            record_rejects.append(
                rejected.with_columns(
                    record=pl.Series(record_json(got, indices, with_parent_asin=fields[0] is PARENT_ASIN))
                )
            )
        # Counting keys walks dict keys in C; cheap next to json.loads.
        keys = Counter(chain.from_iterable(got.records))
        unknown_fields.update({f"{name}.{k}": n for k, n in keys.items() if k not in KNOWN_KEYS[name]})
    return frames, record_rejects, unknown_fields


def parse_unified_with_stats(raw: pl.DataFrame) -> tuple[ParsedPayloads, ParseStats]:
    """Parse ``raw`` (RAW_PAYLOADS rows of source ``unified``) and report what was parsed/rejected.

    Raises ``ValueError`` when ``raw`` lacks RAW_PAYLOADS columns or holds another source's rows:
    that is wiring, not bad input.
    """
    payloads = _routed(raw)
    walked = _walk_payloads(payloads)
    context = payloads.select(
        "_p",
        "site",
        pl.col("date").alias("_slice_date"),
        "payload_id",
        "fetched_at",
        "source",
        "endpoint",
        pl.col("_table").alias("table_name"),
    )
    frames, record_rejects, unknown_fields = _type_kinds(walked.collected, context)
    universe_frame = (
        pl.DataFrame(
            {"asin": walked.universe.parent_asin, "_p": walked.universe.payload},
            schema={"asin": pl.Utf8, "_p": pl.UInt32},
        )
        .join(context, on="_p", how="left")
        .select(pl.col("site"), pl.col("_slice_date").alias("date"), "asin", "payload_id")
        .select([pl.col(c).cast(t) for c, t in UNIVERSE_SCHEMA.items()])
    )
    walk_rejects = walked.rejects.frame().join(context, on="_p", how="left")
    rejected_all = pl.concat(
        [
            QUARANTINE.conform(
                frame.with_columns(date=pl.col("_slice_date"), quarantined_at=pl.col("fetched_at"))
            )
            for frame in [walk_rejects, *record_rejects]
        ]
    )
    parsed = ParsedPayloads(
        universe=universe_frame,
        products=frames["products"],
        points=frames["points"],
        reviews=frames["reviews"],
        keywords=frames["keywords"],
        rejected=rejected_all,
    )
    stats = ParseStats(
        payloads=raw.height,
        skipped_failed_fetch=raw.height - payloads.height,
        unusable_payloads=walked.unusable,
        records={"universe": universe_frame.height, **{k: v.height for k, v in frames.items()}},
        rejected=rejected_all.height,
        not_found=walked.not_found,
        unknown_fields=dict(sorted(unknown_fields.items())),
    )
    return parsed, stats


def parse_unified(raw: pl.DataFrame) -> ParsedPayloads:
    """Parse ``raw`` (RAW_PAYLOADS rows of source ``unified``, one or many slices) into typed frames.

    See the module docstring for what becomes of failed fetches, malformed bodies and bad records;
    :func:`parse_unified_with_stats` also returns the counts.
    """
    return parse_unified_with_stats(raw)[0]


__all__ = ["ParseStats", "SOURCE", "TARGET_TABLE", "parse_unified", "parse_unified_with_stats"]
