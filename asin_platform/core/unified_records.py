"""Records of the unified contract: the fields of each record kind, and typing collected records.

The envelope walk (``core/unified_envelope.py``) gathers each kind's records as Python dicts
(:class:`Collected`); :func:`type_records` turns them into columns typed with polars expressions
and into ``rejected`` rows (``missing_key`` / ``type_mismatch``). The rules are those of
``core/unified.py``'s module docstring.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

# Stands in for an object/array found where a scalar belongs; never equal to a real JSON scalar's
# text because JSON strings cannot hold a raw NUL.
_NON_SCALAR = "\x00<non-scalar>"
_NO_PARENT = "\x00<parent-not-object>"  # e.g. listing.title_length when ``listing`` is a string
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class RecordField:
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


PRODUCT_FIELDS = (
    RecordField("asin", ("asin",), "str", pl.Utf8, required=True),
    RecordField("title", ("title",), "str", pl.Utf8),
    RecordField("brand", ("brand",), "str", pl.Utf8),
    RecordField("category_id", ("category_id",), "str", pl.Utf8),
    RecordField(
        "category_path",
        ("category_path",),
        "str",
        pl.Utf8,
        pre=_join_category_path,
        expect="a list of strings",
    ),
    RecordField("subcategory_id", ("subcategory_id",), "str", pl.Utf8),
    RecordField("title_length", ("listing", "title_length"), "int", pl.Int32),
    RecordField("bullet_count", ("listing", "bullet_count"), "int", pl.Int32),
    RecordField("image_count", ("listing", "image_count"), "int", pl.Int32),
    RecordField("has_aplus", ("listing", "has_aplus"), "bool", pl.Boolean),
    RecordField(
        "attribute_flag_count",
        ("listing", "attribute_flags"),
        "int",
        pl.Int32,
        pre=_count_true_flags,
        expect="an object of flags",
    ),
    RecordField("listed_since", ("listed_since",), "date", pl.Date),
)
POINT_FIELDS = (
    RecordField("date", ("date",), "date", pl.Date, required=True),
    RecordField("price", ("price",), "float", pl.Float64),
    RecordField("bsr_root", ("bsr_root",), "int", pl.Int64),
    RecordField("bsr_sub", ("bsr_sub",), "int", pl.Int64),
    RecordField("rating", ("rating",), "float", pl.Float64),
    RecordField("review_count", ("review_count",), "int", pl.Int64),
    RecordField("new_offer_count", ("new_offer_count",), "int", pl.Int32),
    RecordField("buybox_seller", ("buybox_seller",), "str", pl.Utf8),
)
REVIEW_FIELDS = (
    RecordField("review_id", ("review_id",), "str", pl.Utf8, required=True),
    RecordField("asin", ("asin",), "str", pl.Utf8, required=True),
    RecordField("date", ("date",), "date", pl.Date, required=True),
    RecordField("rating", ("rating",), "int", pl.Int8, required=True),
    RecordField("verified", ("verified",), "bool", pl.Boolean),
)
KEYWORD_FIELDS = (
    RecordField("keyword", ("keyword",), "str", pl.Utf8, required=True),
    RecordField("search_volume", ("search_volume",), "int", pl.Int64),
    RecordField("rank", ("rank",), "int", pl.Int32, required=True),
)
# Points and keywords sit inside a per-ASIN item; the item's ``asin`` becomes the record's asin.
PARENT_ASIN = RecordField("asin", ("__parent_asin__",), "str", pl.Utf8, required=True)

# Keys of each record kind that the contract defines (anything else counts as unknown).
KNOWN_KEYS: dict[str, frozenset[str]] = {
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
    "points": frozenset(f.path[0] for f in POINT_FIELDS),
    "reviews": frozenset(f.path[0] for f in REVIEW_FIELDS),
    "keywords": frozenset(f.path[0] for f in KEYWORD_FIELDS),
}

_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a finite number",
    "bool": "a boolean",
    "date": "a YYYY-MM-DD date",
}


@dataclass
class Collected:
    """Records of one kind gathered from all payloads, with the payload each came from."""

    records: list[dict[str, Any]] = field(default_factory=list)
    payload: list[int] = field(default_factory=list)
    parent_asin: list[Any] = field(default_factory=list)

    def extend(self, records: Sequence[dict[str, Any]], payload: int, parent_asin: Any = None) -> None:
        self.records.extend(records)
        self.payload.extend([payload] * len(records))
        self.parent_asin.extend([parent_asin] * len(records))


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _raw_column(collected: Collected, spec: RecordField) -> pl.Series:
    """The field's values as JSON scalar text (objects/arrays replaced by a marker)."""
    if spec is PARENT_ASIN:
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


def _typed(raw: pl.Expr, spec: RecordField) -> pl.Expr:
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


def _label(spec: RecordField) -> str:
    """The field as the contract names it: ``listing.title_length``; the item's asin is ``asin``."""
    return "asin" if spec is PARENT_ASIN else ".".join(spec.path)


def _problem_text(flags: list[pl.Expr]) -> pl.Expr:
    """Join the non-null problem texts; null (not "") when the record has none."""
    text = pl.concat_str(flags, separator="; ", ignore_nulls=True)
    return pl.when(text != "").then(text)


def type_records(
    name: str,
    collected: Collected,
    fields: Sequence[RecordField],
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


def record_json(collected: Collected, indices: list[int], with_parent_asin: bool) -> list[str]:
    """JSON text of the rejected records only (never of every row)."""
    texts = []
    for i in indices:
        record = collected.records[i]
        if with_parent_asin and "asin" not in record:
            record = {"asin": collected.parent_asin[i], **record}
        texts.append(dumps(record))
    return texts
