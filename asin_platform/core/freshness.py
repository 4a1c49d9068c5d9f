"""Freshness judged on the newest data: how far the newest stored day of each site is behind now.

A day's data can only exist once the day is over, so a site whose newest day is D is "lagging" by
``now - (D + 1 day, 00:00 UTC)``. Only the newest day counts: backfilling an old range adds old
days and never moves a site's newest day back, so it can never make this fail; a site whose newest
day is older than the allowed lag (or that has no data at all) fails it, whatever ran last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


@dataclass(frozen=True)
class Freshness:
    passed: bool
    description: str
    latest_by_site: dict[str, str | None]
    lag_hours_by_site: dict[str, float | None]
    stale_sites: list[str]


def lag_hours(latest: date, now: datetime) -> float:
    """Hours from the end of ``latest`` (UTC) to ``now``; negative while ``latest`` is today."""
    day_over = datetime.combine(latest + timedelta(days=1), time.min, UTC)
    return (now - day_over).total_seconds() / 3600


def freshness_verdict(
    latest_by_site: Mapping[str, date | None],
    *,
    sites: Sequence[str],
    now: datetime,
    max_lag_hours: float,
) -> Freshness:
    """Stale = no data, or newest day more than ``max_lag_hours`` behind ``now``, per site."""
    lags = {s: (lag_hours(d, now) if (d := latest_by_site.get(s)) else None) for s in sites}
    stale = sorted(s for s, h in lags.items() if h is None or h > max_lag_hours)
    worst = max((h for h in lags.values() if h is not None), default=None)
    if stale:
        description = (
            "stale: "
            + ", ".join(
                f"{s} ({'no data' if lags[s] is None else f'newest {latest_by_site[s]}, {lags[s]:.0f} h behind'})"
                for s in stale
            )
            + f" (allowed {max_lag_hours:g} h)"
        )
    else:
        description = f"newest day of every site within {max_lag_hours:g} h (worst {worst or 0:.0f} h)"
    return Freshness(
        passed=not stale,
        description=description,
        latest_by_site={s: (str(d) if (d := latest_by_site.get(s)) else None) for s in sites},
        lag_hours_by_site={s: (round(h, 1) if h is not None else None) for s, h in lags.items()},
        stale_sites=stale,
    )
