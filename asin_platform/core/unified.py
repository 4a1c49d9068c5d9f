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
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import polars as pl

from asin_platform.core.parsed import (
    KEYWORDS_SCHEMA,
    POINTS_SCHEMA,
    PRODUCTS_SCHEMA,
    REVIEWS_SCHEMA,
    UNIVERSE_SCHEMA,
    ParsedPayloads,
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

# Stands in for an object/array found where a scalar belongs; never equal to a real JSON scalar's
# text because JSON strings cannot hold a raw NUL.
_NON_SCALAR = "\x00<non-scalar>"
_NO_PARENT = "\x00<parent-not-object>"  # e.g. listing.title_length when ``listing`` is a string
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class _Field:
    """One column read from a record: where it is, what type the contract says it has."""

    column: str
    path: tuple[str, ...]
    kind: str  # str | int | float | bool | date
    dtype: pl.DataType
    required: bool = False
    pre: Callable[[Any], Any] | None = None  # per-value reshaping of composite fields
    expect: str | None = None  # what the contract wants, for the error text (default: from kind)


def _join_category_path(value: Any) -> Any:
    """``["Beauty", "Skin Care"]`` -> ``"Beauty > Skin Care"``; anything else but a string is bad."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return " > ".join(value)
    return _NON_SCALAR


def _count_true_flags(value: Any) -> Any:
    """``attribute_flags`` object -> number of flags that are ``true`` (the mart keeps the count)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return sum(1 for flag in value.values() if flag is True)
    return _NON_SCALAR


_PRODUCT_FIELDS = (
    _Field("asin", ("asin",), "str", pl.Utf8, required=True),
    _Field("title", ("title",), "str", pl.Utf8),
    _Field("brand", ("brand",), "str", pl.Utf8),
    _Field("category_id", ("category_id",), "str", pl.Utf8),
    _Field(
        "category_path",
        ("category_path",),
        "str",
        pl.Utf8,
        pre=_join_category_path,
        expect="a list of strings",
    ),
    _Field("subcategory_id", ("subcategory_id",), "str", pl.Utf8),
    _Field("title_length", ("listing", "title_length"), "int", pl.Int32),
    _Field("bullet_count", ("listing", "bullet_count"), "int", pl.Int32),
    _Field("image_count", ("listing", "image_count"), "int", pl.Int32),
    _Field("has_aplus", ("listing", "has_aplus"), "bool", pl.Boolean),
    _Field(
        "attribute_flag_count",
        ("listing", "attribute_flags"),
        "int",
        pl.Int32,
        pre=_count_true_flags,
        expect="an object of flags",
    ),
    _Field("listed_since", ("listed_since",), "date", pl.Date),
)
_POINT_FIELDS = (
    _Field("date", ("date",), "date", pl.Date, required=True),
    _Field("price", ("price",), "float", pl.Float64),
    _Field("bsr_root", ("bsr_root",), "int", pl.Int64),
    _Field("bsr_sub", ("bsr_sub",), "int", pl.Int64),
    _Field("rating", ("rating",), "float", pl.Float64),
    _Field("review_count", ("review_count",), "int", pl.Int64),
    _Field("new_offer_count", ("new_offer_count",), "int", pl.Int32),
    _Field("buybox_seller", ("buybox_seller",), "str", pl.Utf8),
)
_REVIEW_FIELDS = (
    _Field("review_id", ("review_id",), "str", pl.Utf8, required=True),
    _Field("asin", ("asin",), "str", pl.Utf8, required=True),
    _Field("date", ("date",), "date", pl.Date, required=True),
    _Field("rating", ("rating",), "int", pl.Int8, required=True),
    _Field("verified", ("verified",), "bool", pl.Boolean),
)
_KEYWORD_FIELDS = (
    _Field("keyword", ("keyword",), "str", pl.Utf8, required=True),
    _Field("search_volume", ("search_volume",), "int", pl.Int64),
    _Field("rank", ("rank",), "int", pl.Int32, required=True),
)
# Points and keywords sit inside a per-ASIN item; the item's ``asin`` becomes the record's asin.
_PARENT_ASIN = _Field("asin", ("__parent_asin__",), "str", pl.Utf8, required=True)

# Keys of each record kind that the contract defines (anything else counts as unknown).
_KNOWN_KEYS: dict[str, frozenset[str]] = {
    "products": frozenset(
        {
            "asin",
            "site",
            "title",
            "brand",
            "category_id",
            "category_path",
            "subcategory_id",
            "listing",
            "listed_since",
        }
    ),
    "points": frozenset(f.path[0] for f in _POINT_FIELDS),
    "reviews": frozenset(f.path[0] for f in _REVIEW_FIELDS),
    "keywords": frozenset(f.path[0] for f in _KEYWORD_FIELDS),
}

_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a finite number",
    "bool": "a boolean",
    "date": "a YYYY-MM-DD date",
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


class _ShapeError(Exception):
    """The body is valid JSON but not shaped like the contract's envelope."""


@dataclass
class _Collected:
    """Records of one kind gathered from all payloads, with the payload each came from."""

    records: list[dict[str, Any]] = field(default_factory=list)
    payload: list[int] = field(default_factory=list)
    parent_asin: list[Any] = field(default_factory=list)

    def extend(self, records: Sequence[dict[str, Any]], payload: int, parent_asin: Any = None) -> None:
        self.records.extend(records)
        self.payload.extend([payload] * len(records))
        self.parent_asin.extend([parent_asin] * len(records))


@dataclass
class _Rejects:
    """Rejected payloads / records found while walking the JSON (before any typing)."""

    payload: list[int] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)
    record: list[str] = field(default_factory=list)
    asin: list[str | None] = field(default_factory=list)

    def add(self, payload: int, reason: str, detail: str, record: str, asin: Any = None) -> None:
        self.payload.append(payload)
        self.reason.append(reason)
        self.detail.append(detail)
        self.record.append(record)
        self.asin.append(asin if isinstance(asin, str) else None)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "_p": self.payload,
                "reason": self.reason,
                "detail": self.detail,
                "record": self.record,
                "asin": self.asin,
            },
            schema={
                "_p": pl.UInt32,
                "reason": pl.Utf8,
                "detail": pl.Utf8,
                "record": pl.Utf8,
                "asin": pl.Utf8,
            },
        )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _list_at(doc: Any, key: str, what: str) -> list[Any]:
    """``doc[key]`` when ``doc`` is an object holding a list there; else the envelope is wrong."""
    if not isinstance(doc, dict):
        raise _ShapeError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    if key not in doc:
        raise _ShapeError(f"{what}: no {key!r} key")
    value = doc[key]
    if value is None:
        return []  # an explicit null list means "nothing", as an empty page does
    if not isinstance(value, list):
        raise _ShapeError(f"{what}: {key!r} is {type(value).__name__}, expected a list")
    return value


def _split_objects(
    items: list[Any], payload: int, rejects: _Rejects, what: str, asin: Any = None
) -> list[dict[str, Any]]:
    """Keep the JSON objects of ``items``; every non-object element is a ``type_mismatch``."""
    objects = [item for item in items if isinstance(item, dict)]
    if len(objects) != len(items):
        for item in items:
            if not isinstance(item, dict):
                rejects.add(
                    payload,
                    "type_mismatch",
                    f"{what}: element is {type(item).__name__}, expected an object",
                    _dumps(item),
                    asin,
                )
    return objects


def _walk(
    kind: str,
    single: bool,
    doc: Any,
    payload: int,
    out: dict[str, _Collected],
    universe: _Collected,
    rejects: _Rejects,
) -> int:
    """Collect the records of one decoded body; return how many ASINs it lists as ``not_found``."""
    not_found = doc.get("not_found") if isinstance(doc, dict) else None
    n_not_found = len(not_found) if isinstance(not_found, list) else 0
    if kind == "asins":
        asins = _list_at(doc, "asins", "asins")
        good = [a for a in asins if isinstance(a, str) and a]
        if len(good) != len(asins):
            for a in asins:
                if not (isinstance(a, str) and a):
                    rejects.add(
                        payload, "type_mismatch", f"asins: element {a!r} is not a non-empty string", _dumps(a)
                    )
        # Universe entries are bare strings: kept as the parent asin, with no record of their own.
        universe.parent_asin.extend(good)
        universe.payload.extend([payload] * len(good))
    elif kind == "products":
        products = [doc] if single else _list_at(doc, "products", "products")
        out["products"].extend(_split_objects(products, payload, rejects, "products"), payload)
    elif kind in ("timeseries", "keywords"):
        child = "points" if kind == "timeseries" else "keywords"
        target = "points" if kind == "timeseries" else "keywords"
        # The single-ASIN keywords route answers with the item itself; accept either envelope.
        has_items = isinstance(doc, dict) and "items" in doc
        items = _list_at(doc, "items", kind) if (has_items or not single) else [doc]
        for item in _split_objects(items, payload, rejects, f"{kind} items"):
            asin = item.get("asin")
            if child not in item or not isinstance(item[child], list | None):
                reason = "missing_key" if child not in item else "type_mismatch"
                rejects.add(
                    payload, reason, f"{kind} item: {child!r} missing or not a list", _dumps(item), asin
                )
                continue
            records = _split_objects(item[child] or [], payload, rejects, f"{kind} {child}", asin)
            out[target].extend(records, payload, asin)
    elif kind == "reviews":
        reviews = _list_at(doc, "reviews", "reviews")
        out["reviews"].extend(_split_objects(reviews, payload, rejects, "reviews"), payload)
    return n_not_found


def _raw_column(collected: _Collected, spec: _Field) -> pl.Series:
    """The field's values as JSON scalar text (objects/arrays replaced by a marker)."""
    if spec is _PARENT_ASIN:
        values = collected.parent_asin
    elif len(spec.path) == 1:
        key = spec.path[0]
        values = [record.get(key) for record in collected.records]
    else:
        head, rest = spec.path[0], spec.path[1:]
        values = []
        for record in collected.records:
            value: Any = record.get(head)
            for key in rest:
                value = value.get(key) if isinstance(value, dict) else (None if value is None else _NO_PARENT)
            values.append(value)
    if spec.pre is not None:
        values = [v if v is _NO_PARENT else spec.pre(v) for v in values]
    elif not _SCALAR_TYPES.issuperset(set(map(type, values))):
        # Only pay for the per-value test when a container is actually present somewhere.
        values = [_NON_SCALAR if isinstance(v, dict | list) else v for v in values]
    # (_NO_PARENT is a str, so it passes the scalar test above and reaches polars as itself.)
    # strict=False turns every scalar into its text (True -> "true", 12.5 -> "12.5") and never raises.
    return pl.Series(spec.column, values, dtype=pl.Utf8, strict=False)


def _typed(raw: pl.Expr, spec: _Field) -> pl.Expr:
    """Read a JSON-text column as the contract type; unreadable values become null."""
    raw = pl.when(raw.is_in([_NON_SCALAR, _NO_PARENT])).then(None).otherwise(raw)
    if spec.kind == "str":
        return raw
    if spec.kind == "int":
        return raw.cast(spec.dtype, strict=False)
    if spec.kind == "float":
        number = raw.cast(pl.Float64, strict=False)
        # NaN / Infinity are accepted by json.loads but are not values: a price of NaN is a mismatch.
        return pl.when(number.is_finite()).then(number).otherwise(None)
    if spec.kind == "bool":
        return raw.replace_strict({"true": True, "false": False}, default=None, return_dtype=pl.Boolean)
    if spec.kind == "date":
        return raw.str.to_date("%Y-%m-%d", strict=False)
    raise ValueError(f"unknown field kind {spec.kind!r}")


def _label(spec: _Field) -> str:
    """The field as the contract names it: ``listing.title_length``; the item's asin is ``asin``."""
    return "asin" if spec is _PARENT_ASIN else ".".join(spec.path)


def _problem_text(flags: list[pl.Expr]) -> pl.Expr:
    """Join the non-null problem texts; null (not "") when the record has none."""
    text = pl.concat_str(flags, separator="; ", ignore_nulls=True)
    return pl.when(text != "").then(text)


def _type_records(
    name: str,
    collected: _Collected,
    fields: Sequence[_Field],
    payloads: pl.DataFrame,
    schema: dict,
    extra: dict[str, pl.Expr],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed rows in ``schema`` plus ``rejected`` rows (QUARANTINE columns + ``_i``) for one kind."""
    raw = pl.DataFrame([_raw_column(collected, spec) for spec in fields]).with_columns(
        pl.Series("_p", collected.payload, dtype=pl.UInt32),
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"),
    )
    typed = {spec.column: _typed(pl.col(spec.column), spec) for spec in fields}
    mismatch = [
        pl.when(pl.col(spec.column).is_not_null() & typed[spec.column].is_null()).then(
            pl.when(pl.col(spec.column) == _NO_PARENT)
            .then(pl.lit(f"{_label(spec)}: {spec.path[0]} is not an object"))
            .otherwise(
                pl.format(
                    f"{_label(spec)}={{}} is not {spec.expect or _TYPE_WORDS[spec.kind]}",
                    pl.col(spec.column).str.replace(_NON_SCALAR, "<object or list>", literal=True),
                )
            )
        )
        for spec in fields
    ]
    missing = [
        pl.when(pl.col(spec.column).is_null()).then(pl.lit(_label(spec))) for spec in fields if spec.required
    ]
    key_bad = [typed[spec.column].is_null() for spec in fields if spec.required]
    checked = raw.join(payloads, on="_p", how="left").with_columns(
        _mismatch=_problem_text(mismatch),
        _missing=_problem_text(missing) if missing else pl.lit(None, pl.Utf8),
        _drop=pl.any_horizontal(key_bad) if key_bad else pl.lit(False),
    )
    rows = checked.filter(~pl.col("_drop")).select(
        *[typed[spec.column].alias(spec.column) for spec in fields],
        *[expr.alias(col) for col, expr in extra.items()],
    )
    problems = checked.filter(pl.col("_mismatch").is_not_null() | pl.col("_missing").is_not_null())
    rejected = pl.concat(
        [
            problems.filter(pl.col("_missing").is_not_null()).with_columns(
                reason=pl.lit("missing_key"),
                detail=pl.format(
                    f"{name}: required key(s) missing or null: {{}} ({{}})", "_missing", "endpoint"
                ),
            ),
            problems.filter(pl.col("_mismatch").is_not_null()).with_columns(
                reason=pl.lit("type_mismatch"),
                detail=pl.format(f"{name}: {{}} ({{}})", "_mismatch", "endpoint"),
            ),
        ]
    ).with_columns(asin=typed["asin"] if "asin" in typed else pl.lit(None, pl.Utf8))
    return rows.select([pl.col(c).cast(t) for c, t in schema.items()]), rejected


def _record_json(collected: _Collected, indices: list[int], with_parent_asin: bool) -> list[str]:
    """JSON text of the rejected records only (never of every row)."""
    texts = []
    for i in indices:
        record = collected.records[i]
        if with_parent_asin and "asin" not in record:
            record = {"asin": collected.parent_asin[i], **record}
        texts.append(_dumps(record))
    return texts


def parse_unified_with_stats(raw: pl.DataFrame) -> tuple[ParsedPayloads, ParseStats]:
    """Parse ``raw`` (RAW_PAYLOADS rows of source ``unified``) and report what was parsed/rejected.

    Raises ``ValueError`` when ``raw`` lacks RAW_PAYLOADS columns or holds another source's rows:
    that is wiring, not bad input.
    """
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
    usable_filter = pl.col("status") == 200
    payloads = (
        raw.filter(usable_filter)
        .with_row_index("_p")
        .with_columns(
            _kind=kind_expr,
            _single=pl.col("endpoint").str.contains(_SINGLE_ASIN),
            _table=kind_expr.replace_strict(TARGET_TABLE, return_dtype=pl.Utf8),
        )
    )

    collected = {name: _Collected() for name in ("products", "points", "reviews", "keywords")}
    universe = _Collected()
    rejects = _Rejects()
    not_found = 0
    unusable = 0
    # The one Python loop: decode each payload's body and walk its envelope.
    for p, kind, single, body, endpoint in payloads.select(
        "_p", "_kind", "_single", "body", "endpoint"
    ).iter_rows():
        if kind == "unknown":
            rejects.add(
                p, "unexpected_shape", f"unknown endpoint {endpoint!r}", (body or "")[:BODY_EXCERPT_CHARS]
            )
            unusable += 1
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
            unusable += 1
            continue
        try:
            not_found += _walk(kind, single, doc, p, collected, universe, rejects)
        except _ShapeError as exc:
            rejects.add(p, "unexpected_shape", f"{endpoint}: {exc}", (body or "")[:BODY_EXCERPT_CHARS])
            unusable += 1

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
    common = {
        "site": pl.col("site"),
        "source": pl.col("source"),
        "payload_id": pl.col("payload_id"),
        "fetched_at": pl.col("fetched_at"),
    }
    specs = {
        "products": (_PRODUCT_FIELDS, PRODUCTS_SCHEMA, {**common, "date": pl.col("_slice_date")}),
        "points": ((_PARENT_ASIN, *_POINT_FIELDS), POINTS_SCHEMA, common),
        "reviews": (_REVIEW_FIELDS, REVIEWS_SCHEMA, common),
        "keywords": (
            (_PARENT_ASIN, *_KEYWORD_FIELDS),
            KEYWORDS_SCHEMA,
            {**common, "date": pl.col("_slice_date")},
        ),
    }
    frames: dict[str, pl.DataFrame] = {}
    record_rejects: list[pl.DataFrame] = []
    unknown_fields: Counter[str] = Counter()
    for name, (fields, schema, extra) in specs.items():
        got = collected[name]
        frame, rejected = _type_records(name, got, fields, context, schema, extra)
        frames[name] = frame
        if len(rejected):
            indices = rejected["_i"].to_list()
            record_rejects.append(
                rejected.with_columns(
                    record=pl.Series(_record_json(got, indices, with_parent_asin=fields[0] is _PARENT_ASIN))
                )
            )
        # Counting keys walks dict keys in C; cheap next to json.loads.
        keys = Counter(chain.from_iterable(got.records))
        unknown_fields.update({f"{name}.{k}": n for k, n in keys.items() if k not in _KNOWN_KEYS[name]})

    universe_frame = (
        pl.DataFrame(
            {"asin": universe.parent_asin, "_p": universe.payload},
            schema={"asin": pl.Utf8, "_p": pl.UInt32},
        )
        .join(context, on="_p", how="left")
        .select(pl.col("site"), pl.col("_slice_date").alias("date"), "asin", "payload_id")
        .select([pl.col(c).cast(t) for c, t in UNIVERSE_SCHEMA.items()])
    )

    walk_rejects = rejects.frame().join(context, on="_p", how="left")
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
        unusable_payloads=unusable,
        records={"universe": universe_frame.height, **{k: v.height for k, v in frames.items()}},
        rejected=rejected_all.height,
        not_found=not_found,
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
