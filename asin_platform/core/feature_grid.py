"""The dense day grid of core/features.py: (site, asin) numbering, blocks, the index map (pure polars).

Each (site, asin) of a call's mart rows is a *block* of ``span`` consecutive days; cell
``block * span + x`` holds day ``x`` of that product (a row of nulls on a missing day). Blocks
are numbered in (site, asin) order, so anything taken from the grid in position order is in
(site, asin, date) order. Strings never enter the grid: pairs are coded by private categorical
numberings (exact, no hash collisions) and every lookup is an integer gather. Why a grid at all,
and the measurements behind each choice: core/features.py's module docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl


def codes(namespace: str) -> pl.Categorical:
    """A private, call-scoped string -> dense UInt32 numbering (first seen = 0, 1, ...).

    Exact (no hash collisions) and ~3x cheaper than ranking the strings. polars keeps the mapping
    only while a column of that dtype is alive: a later cast must happen while one is held, or it
    starts a fresh numbering (see ``Blocks.anchor``)."""
    return pl.Categorical(pl.Categories.random(namespace=f"asin_platform.features.{namespace}"))


@dataclass(frozen=True)
class Blocks:
    """The grid block of each (site, asin) of one call's mart rows, in (site, asin) order.

    A pair is coded ``site code * asin_width + asin code`` from two private numberings (a cast of
    the ASIN alone costs ~0.4x a cast of "site + asin" strings); ``block_of`` maps that code to the
    block. ``anchor`` holds a column of each numbering, which keeps both alive for the keyword rows."""

    sites: pl.Categorical
    asins: pl.Categorical
    site_width: int
    asin_width: int
    block_of: pl.Series
    anchor: pl.DataFrame

    @property
    def count(self) -> int:
        return self.anchor.height

    @classmethod
    def of(
        cls, site: pl.Series, asin: pl.Series, sites: pl.Categorical, asins: pl.Categorical
    ) -> tuple[Blocks, pl.Series]:
        """From the mart rows' site and ASIN cast to ``sites`` / ``asins`` (core.features._history):
        the blocks and each row's block (``_block``). Only the distinct pairs' strings are sorted,
        never the rows."""
        site_code, asin_code = (s.to_physical().cast(pl.Int64) for s in (site, asin))
        site_width = int(site_code.max()) + 1 if site.len() else 0  # type: ignore[arg-type]
        asin_width = int(asin_code.max()) + 1 if asin.len() else 0  # type: ignore[arg-type]
        code = site_code * asin_width + asin_code
        first = code.arg_unique()
        anchor = pl.DataFrame([site.gather(first).alias("_site"), asin.gather(first).alias("_asin")])
        names = pl.DataFrame(
            {
                "_code": code.gather(first),
                "_s": anchor["_site"].cast(pl.Utf8),
                "_a": anchor["_asin"].cast(pl.Utf8),
            }
        ).sort("_s", "_a")
        block_of = (
            pl.Series("_block", dtype=pl.Int64)
            .extend_constant(None, site_width * asin_width)
            .scatter(names["_code"], pl.int_range(0, names.height, dtype=pl.Int64, eager=True))
        )
        return cls(sites, asins, site_width, asin_width, block_of, anchor), block_of.gather(code).alias(
            "_block"
        )

    def block(self, site: pl.Expr, asin: pl.Expr) -> pl.Expr:
        """The block of each (site, asin); null for a pair without mart rows."""
        s = site.cast(self.sites).to_physical().cast(pl.Int64)
        a = asin.cast(self.asins).to_physical().cast(pl.Int64)
        code = pl.when((s < self.site_width) & (a < self.asin_width)).then(s * self.asin_width + a)
        return pl.lit(self.block_of).gather(code)


def build_grid(hist: pl.DataFrame, span: int, columns: Sequence[str]) -> pl.DataFrame:
    """The dense (block x day) grid of ``columns`` of ``hist`` (rows with ``_block`` and day number
    ``x``), with ``_row`` = the ``hist`` row of each cell (null on a missing day) and ``_pos`` = block * span + x.

    Built as an index map: scatter each row number to its position, then gather every column
    through the map (a null index gathers a null row). That replaces a sort and a sorted join
    (~2x the cost) and keeps the strings out of the grid altogether."""
    n_pos = (int(hist["_block"].max()) + 1) * span if hist.height else 0  # type: ignore[arg-type]
    pos = hist["_block"].cast(pl.Int64) * span + hist["x"]
    source = pl.Series("_row", dtype=pl.UInt32).extend_constant(None, n_pos)
    source = source.scatter(pos, pl.int_range(0, hist.height, dtype=pl.UInt32, eager=True))
    if n_pos - source.null_count() != hist.height:
        # two rows on one position: a duplicated mart key would corrupt its whole block
        raise ValueError("mart has duplicate (site, date, asin) rows")
    # A column is made contiguous before its gather: ``hist`` arrives in ~100 chunks and a gather
    # through chunk lookups costs 0.42 CPU s per 97k-ASIN block of 31 days against 0.18 s for
    # rechunk + contiguous gather. One column at a time, so the copies never add up (a 90-day
    # backfill of 100k ASINs peaked 0.4 GB higher with all columns rechunked at once).
    grid = pl.DataFrame([hist[c].rechunk().gather(source) for c in columns])
    return grid.with_columns(
        source,
        _pos=pl.int_range(0, n_pos, dtype=pl.Int64),
        x=pl.int_range(0, n_pos, dtype=pl.Int64) % span,
    )


def at_positions(positions: pl.Series, keyed: pl.DataFrame, n_pos: int) -> pl.DataFrame:
    """The columns of ``keyed`` (one row per distinct ``_pos``) looked up at ``positions``; null
    where absent. A scatter into position-indexed columns plus a gather: cheaper than a join."""
    out = {}
    for name in keyed.columns:
        if name == "_pos":
            continue
        dense = pl.Series(name, dtype=keyed.schema[name]).extend_constant(None, n_pos)
        out[name] = dense.scatter(keyed["_pos"], keyed[name]).gather(positions)
    return pl.DataFrame(out)
