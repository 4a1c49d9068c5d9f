"""Warehouse URLs: which backend a URL names, and the same URL with its password redacted."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

Backend = Literal["duckdb", "postgres"]


def backend_of(url: str) -> Backend:
    """``postgres`` for postgresql:// (postgres://, postgresql+psycopg://) URLs, ``duckdb`` for a path
    or duckdb:// URL; ValueError for anything else."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme.startswith("postgres"):
        return "postgres"
    if scheme in ("", "duckdb"):
        return "duckdb"
    raise ValueError(f"unsupported warehouse URL scheme {scheme!r}: use a DuckDB path or postgresql://")


def url_secrets(url: str) -> list[str]:
    """The password of a URL as written and percent-decoded (either may show up in a message)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password or ""]
    found.extend(v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() == "password")
    raw = parts.netloc.rpartition("@")[0].partition(":")[2]
    return [s for s in {*found, raw, unquote(raw)} if s]


def redact_url(url: str) -> str:
    """The URL with any password (userinfo or ``password=`` query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable url>"
