"""The envelope of a decoded unified-API body: where each kind's records sit, collected for typing.

:func:`walk_body` finds the records of one body (``core/unified_records.py`` types them later);
an envelope that is not the contract's raises :class:`ShapeError` (``unexpected_shape``), and a
non-object element where an object belongs is a ``type_mismatch`` in :class:`Rejects`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from asin_platform.core.unified_records import Collected, dumps


class ShapeError(Exception):
    """The body is valid JSON but not shaped like the contract's envelope."""


@dataclass
class Rejects:
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


def _list_at(doc: Any, key: str, what: str) -> list[Any]:
    """``doc[key]`` when ``doc`` is an object holding a list there; else the envelope is wrong."""
    if not isinstance(doc, dict):
        raise ShapeError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    if key not in doc:
        raise ShapeError(f"{what}: no {key!r} key")
    value = doc[key]
    if value is None:
        return []  # an explicit null list means "nothing", as an empty page does
    if not isinstance(value, list):
        raise ShapeError(f"{what}: {key!r} is {type(value).__name__}, expected a list")
    return value


def _split_objects(
    items: list[Any], payload: int, rejects: Rejects, what: str, asin: Any = None
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
                    dumps(item),
                    asin,
                )
    return objects


def walk_body(
    kind: str,
    single: bool,
    doc: Any,
    payload: int,
    out: dict[str, Collected],
    universe: Collected,
    rejects: Rejects,
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
                        payload, "type_mismatch", f"asins: element {a!r} is not a non-empty string", dumps(a)
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
                    payload, reason, f"{kind} item: {child!r} missing or not a list", dumps(item), asin
                )
                continue
            records = _split_objects(item[child] or [], payload, rejects, f"{kind} {child}", asin)
            out[target].extend(records, payload, asin)
    elif kind == "reviews":
        reviews = _list_at(doc, "reviews", "reviews")
        out["reviews"].extend(_split_objects(reviews, payload, rejects, "reviews"), payload)
    return n_not_found
