"""Upstream responses -> ``raw_payloads`` rows (pure)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Protocol

import polars as pl

from asin_platform.schemas import RAW_PAYLOADS


class ResponseLike(Protocol):
    endpoint: str
    params: Mapping[str, str]
    status: int
    attempts: int
    fetched_at: datetime
    body: str
    error: str | None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def payload_frame(
    responses: Iterable[ResponseLike], *, site: str, day: date, source: str, run_id: str
) -> pl.DataFrame:
    """One ``raw_payloads`` row per response. The payload id hashes what identifies a fetch
    (source, endpoint, params, time), so re-fetching the same day yields new ids while a row can
    always be traced back to its request."""
    rows = []
    for r in responses:
        params = json.dumps(dict(r.params), sort_keys=True)
        fetched = r.fetched_at.isoformat()
        rows.append(
            {
                "payload_id": _sha256(f"{source}|{r.endpoint}|{params}|{fetched}|{r.attempts}")[:32],
                "site": site,
                "date": day,
                "source": source,
                "endpoint": r.endpoint,
                "request_params": params,
                "status": r.status,
                "attempts": r.attempts,
                "fetched_at": r.fetched_at,
                "body": r.body,
                "payload_hash": _sha256(r.body),
                "error": r.error,
                "run_id": run_id,
            }
        )
    if not rows:
        return RAW_PAYLOADS.empty()
    return RAW_PAYLOADS.conform(pl.DataFrame(rows, infer_schema_length=None))
