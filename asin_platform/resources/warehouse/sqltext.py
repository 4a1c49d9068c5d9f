"""Small SQL-text helpers shared by the drivers and the resource: quoting, placeholders, arguments."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")  # $$ or $tag$, not the parameter $1


def q(identifier: str) -> str:
    """Quote an identifier (both backends use SQL-standard double quotes)."""
    return '"' + identifier.replace('"', '""') + '"'


def as_date(value: date) -> date:
    """``value`` as a date: datetime is a date subclass, and comparing it with a DATE column would
    compare timestamps."""
    return value.date() if isinstance(value, datetime) else value


def site_list(sites: Sequence[str] | str) -> list[str]:
    """``sites`` as a list: a bare "US" would otherwise iterate as ["U", "S"]."""
    return [sites] if isinstance(sites, str) else list(sites)


def _quoted_end(sql: str, i: int) -> int:
    # End (exclusive) of the literal or quoted identifier opening at i; a doubled quote stays inside.
    quote, end, n = sql[i], i + 1, len(sql)
    while end < n:
        if sql[end] == quote:
            if end + 1 < n and sql[end + 1] == quote:
                end += 2
                continue
            break
        end += 1
    return end + 1


def _verbatim_end(sql: str, i: int) -> int | None:
    """End of the literal, quoted identifier, comment or dollar quote starting at ``i``, else None."""
    n = len(sql)
    if sql[i] in "'\"":
        return _quoted_end(sql, i)
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return n if end < 0 else end
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return n if end < 0 else end + 2
    if sql[i] == "$" and (tag := _DOLLAR_TAG.match(sql, i)):
        end = sql.find(tag.group(0), i + len(tag.group(0)))
        return n if end < 0 else end + len(tag.group(0))
    return None


def qmark_to_pyformat(sql: str) -> str:
    """Translate ``?`` placeholders to psycopg's ``%s`` and escape literal ``%`` as ``%%``.

    ``?`` inside string literals, quoted identifiers, dollar quotes and comments is left alone; ``%`` is
    doubled everywhere because psycopg scans the whole statement, literals included.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        end = _verbatim_end(sql, i)
        if end is not None:
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        c = sql[i]
        out.append("%s" if c == "?" else "%%" if c == "%" else c)
        i += 1
    return "".join(out)
