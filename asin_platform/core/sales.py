"""BSR -> estimated unit sales per day, through a per-(site, category) power law.

Within a root category, daily unit sales fall off roughly as a power of the best-seller rank
(``sales ~ a * bsr ** -b`` with ``b`` in 0.9..1.05, see docs/features.md). The platform never
observes sales, so the curve is a calibration: ``a`` is units/day at rank 1 and ``b`` the exponent.

A :class:`PowerLawPrior` (US ``(a, b)`` per category and each site's market size) turns into the
per-site table with :func:`default_calibration`; the platform passes the bundled simulator's prior
(``asin_platform.simulator.catalog.SALES_PRIOR``, the market it draws BSR from). core/ never imports
the simulator, so without a prior the table is empty and every category uses ``FALLBACK_A`` /
``FALLBACK_B``. Replace the prior with a fitted table (same columns) once real sales are known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import polars as pl

# Used for any (site, category) the calibration does not list. a=5000 units/day at rank 1 and b=1
# is a deliberately mid-sized market: ranks still order correctly, only the level is uncertain.
FALLBACK_A = 5000.0
FALLBACK_B = 1.0

CALIBRATION_SCHEMA: dict[str, pl.DataType] = {
    "site": pl.Utf8(),
    "category_id": pl.Utf8(),
    "a": pl.Float64(),  # units/day at root rank 1
    "b": pl.Float64(),  # power-law exponent (> 0)
}


def estimate_sales(bsr_expr: pl.Expr, a: pl.Expr | float, b: pl.Expr | float) -> pl.Expr:
    """Units/day ``a * bsr ** -b``; null where the BSR is null or not positive.

    Computed as ``exp(ln a - b ln bsr)`` so a column of exponents costs one log and one exp.
    """
    bsr = bsr_expr.cast(pl.Float64)
    a_expr = a if isinstance(a, pl.Expr) else pl.lit(float(a))
    b_expr = b if isinstance(b, pl.Expr) else pl.lit(float(b))
    # A rank of 0 or below is invalid upstream data: no estimate rather than an infinite one.
    return pl.when(bsr > 0).then((a_expr.log() - b_expr * bsr.log()).exp())


@dataclass(frozen=True)
class PowerLawPrior:
    """What is believed about a market before any sales are seen: the US power law ``(a, b)`` per
    category, and each site's size relative to the US (``a`` scales with it; 1.0 when absent)."""

    us_curves: Mapping[str, tuple[float, float]]
    site_scale: Mapping[str, float] = field(default_factory=dict)


def default_calibration(sites: Iterable[str], prior: PowerLawPrior | None = None) -> pl.DataFrame:
    """(site, category_id, a, b) for every category of ``prior`` on each site.

    ``a`` is the prior's US scale times the site's market size, so a rank in a smaller market means
    fewer units. Without a prior the table is empty and every category falls back to
    ``FALLBACK_A`` / ``FALLBACK_B``.
    """
    if prior is None:
        return pl.DataFrame(schema=CALIBRATION_SCHEMA)
    rows = [
        (site, category, float(a_us) * float(prior.site_scale.get(site, 1.0)), float(b))
        for site in dict.fromkeys(sites)
        for category, (a_us, b) in prior.us_curves.items()
    ]
    return pl.DataFrame(rows, schema=CALIBRATION_SCHEMA, orient="row")


def validate_calibration(calibration: pl.DataFrame) -> pl.DataFrame:
    """The calibration with its contract checked: the four columns, one row per (site, category),
    positive ``a`` and ``b``. Raises ValueError naming the problem."""
    missing = set(CALIBRATION_SCHEMA) - set(calibration.columns)
    if missing:
        raise ValueError(f"calibration lacks column(s) {sorted(missing)}")
    cal = calibration.select([pl.col(c).cast(t) for c, t in CALIBRATION_SCHEMA.items()])
    if cal.select(pl.struct("site", "category_id").is_duplicated().any()).item():
        raise ValueError("calibration has more than one row for a (site, category_id)")
    if cal.select(((pl.col("a") <= 0) | (pl.col("b") <= 0)).any()).item():
        raise ValueError("calibration a and b must be positive")
    return cal
