"""Faults applied to a route's decoded body before it is serialised: duplicated, dropped and
out-of-range rows, unknown extra fields (each returns True when it changed the body; only then is it
counted in ``SimulatorStats``; ``u`` / ``v`` are the request's seeded draws), and value mutations
(``mutate_values``, drawn per value cell, see ``faults.py``).
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterator
from typing import Any

from asin_platform.simulator.faults import (
    HUGE_VALUE,
    MUTABLE_FIELDS,
    MUTATION_KINDS,
    NULL_MUTABLE_FIELDS,
    Mutation,
)
from asin_platform.simulator.numerics import uniform

# Single-ASIN routes share their batch kind: a mutation is recorded under the parser's record kind.
BATCH_KIND = {"series": "timeseries", "product": "products"}
_SALT_PICK, _SALT_KIND = 0x3D1, 0x3D2


def _row_lists(kind: str, body: dict[str, Any]) -> list[list[Any]]:
    """The lists holding rows in a route's body (where rows can be duplicated or dropped)."""
    if kind == "asins":
        return [body["asins"]]
    if kind == "products":
        return [body["products"]]
    if kind == "series":
        return [body["points"]]
    if kind == "timeseries":
        return [item["points"] for item in body["items"]]
    if kind == "reviews":
        return [body["reviews"]]
    if kind == "keywords":
        return [item["keywords"] for item in body["items"]]
    return []


def _batch_list(kind: str, body: dict[str, Any]) -> list[Any] | None:
    """The per-ASIN list of a batch route: dropping an element omits an ASIN silently."""
    if kind == "products":
        return body["products"]
    if kind in ("timeseries", "keywords"):
        return body["items"]
    return None


def _pick(lists: list[list[Any]], u: float) -> tuple[list[Any], int] | None:
    flat = [(rows, k) for rows in lists for k in range(len(rows))]
    if not flat:
        return None
    return flat[min(int(u * len(flat)), len(flat) - 1)]


def duplicate_row(kind: str, body: dict[str, Any], u: float) -> bool:
    """Repeat one row: an inner row where the route has them (point, review, keyword, ASIN), else an item."""
    hit = _pick(_row_lists(kind, body), u)
    batch = _batch_list(kind, body)
    if hit is None and batch:
        hit = _pick([batch], u)
    if hit is None:
        return False
    rows, k = hit
    rows.insert(k + 1, copy.deepcopy(rows[k]))
    return True


def drop_row(kind: str, body: dict[str, Any], u: float) -> bool:
    batch = _batch_list(kind, body)
    hit = _pick([batch], u) if batch else _pick(_row_lists(kind, body), u)
    if hit is None:
        return False
    rows, k = hit
    del rows[k]
    return True


def corrupt(kind: str, body: dict[str, Any], u: float, v: float) -> bool:
    """Set one value out of its valid range (v picks which field and how)."""
    if kind == "product":
        body["listing"]["image_count"] = -1 if v < 0.5 else 42
        return True
    if kind == "products":
        hit = _pick([body["products"]], u)
        if hit is None:
            return False
        hit[0][hit[1]]["listing"]["bullet_count" if v < 0.5 else "image_count"] = -1
        return True
    hit = _pick(_row_lists(kind, body), u)
    if hit is None or kind == "asins":
        return False
    row = hit[0][hit[1]]
    if kind in ("series", "timeseries"):
        field_, value = [
            ("bsr_root", 0),
            ("bsr_root", -17),
            ("rating", 7.5),
            ("rating", -1.0),
            ("price", -abs(row.get("price") or 9.99)),
            ("review_count", -1 - (row.get("review_count") or 0)),
        ][min(int(v * 6), 5)]
    elif kind == "reviews":
        field_, value = ("rating", 0 if v < 0.5 else 6)
    else:  # keywords
        field_, value = ("rank", 0) if v < 0.5 else ("search_volume", -100)
    row[field_] = value
    return True


def add_extra_fields(obj: Any, depth: int = 0) -> None:
    """Add unknown fields to every object (clients must ignore them)."""
    if isinstance(obj, dict):
        for value in list(obj.values()):
            add_extra_fields(value, depth + 1)
        obj["x_vendor_trace"] = f"sim-{depth}"
        if depth == 0:
            obj["x_extra"] = {"note": "unknown field", "n": 1}
    elif isinstance(obj, list):
        for value in obj:
            add_extra_fields(value, depth + 1)


def _cells(
    kind: str, body: dict[str, Any], day: str
) -> Iterator[tuple[dict[str, Any], str, str, str | None]]:
    """(object holding the field, row date, asin, keyword) of every row ``mutate_values`` may touch."""
    if kind == "timeseries":
        items = body.get("items", []) if "items" in body else [body]
        for item in items:
            for point in item.get("points") or []:
                yield point, str(point.get("date")), str(item.get("asin")), None
    elif kind == "products":
        for product in body.get("products", []) if "products" in body else [body]:
            if isinstance(product.get("listing"), dict):
                yield product["listing"], day, str(product.get("asin")), None
    elif kind == "keywords":
        for item in body.get("items", []):
            for kw in item.get("keywords") or []:
                yield kw, day, str(item.get("asin")), str(kw.get("keyword"))


def _key(text: str | None) -> int:
    return 0 if text is None else zlib.crc32(text.encode())


def _mutated(name: str, original: Any, pick: float) -> Any:
    """The replacement value: negative, a non-numeric string, 10**12 (float fields: 1e12) or null
    (required fields only)."""
    kinds = MUTATION_KINDS if name in NULL_MUTABLE_FIELDS else MUTATION_KINDS[:-1]
    kind = kinds[min(int(pick * len(kinds)), len(kinds) - 1)]
    if kind == "negative":
        return -abs(original) if original else -1
    if kind == "string":
        return "n/a"
    if kind == "huge":
        return float(HUGE_VALUE) if isinstance(original, float) else HUGE_VALUE
    return None


def mutate_values(
    kind: str, body: dict[str, Any], site: str, day: str, seed: int, rate: float
) -> list[Mutation]:
    """Replace a share ``rate`` of the body's mutable values in place; return what was replaced.

    Each (endpoint, site, date, asin, field[, keyword]) cell draws from a seeded hash of itself, so
    a retried request carries exactly the same mutations.
    """
    endpoint = BATCH_KIND.get(kind, kind)
    fields = MUTABLE_FIELDS.get(endpoint)
    if not fields or rate <= 0:
        return []
    done: list[Mutation] = []
    base = (seed, _key(endpoint), _key(site))
    for obj, row_date, asin, keyword in _cells(endpoint, body, day):
        for k, name in enumerate(fields):
            if name not in obj:
                continue
            cell = (*base, _key(row_date), _key(asin), k, _key(keyword))
            if uniform(*cell, _SALT_PICK) >= rate:
                continue
            original = obj[name]
            obj[name] = _mutated(name, original, uniform(*cell, _SALT_KIND))
            done.append(Mutation(endpoint, site, row_date, asin, name, obj[name], original, keyword))
    return done
