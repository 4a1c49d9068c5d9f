"""Route stored payloads to the parser of their source."""

from __future__ import annotations

import polars as pl

from asin_platform.core.parsed import ParsedPayloads


def parse_payloads(raw: pl.DataFrame) -> ParsedPayloads:
    """Parse ``raw_payloads`` rows of any source into one ParsedPayloads."""
    parts: list[ParsedPayloads] = []
    unified = raw.filter(pl.col("source") == "unified")
    if unified.height:
        from asin_platform.core.unified import parse_unified

        parts.append(parse_unified(unified))
    keepa = raw.filter(pl.col("source") == "keepa")
    if keepa.height:
        from asin_platform.core.keepa import parse_keepa

        parts.append(parse_keepa(keepa))
    unknown = raw.filter(~pl.col("source").is_in(["unified", "keepa"]))
    if unknown.height:
        raise ValueError(f"raw payloads from unknown source(s): {unknown['source'].unique().to_list()}")
    return ParsedPayloads.concat(parts)
