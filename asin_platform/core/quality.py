"""What one ``standardise`` call did: coverage, duplicates, flags and quarantine reasons, overall and
per (site, date) slice, for materialisation metadata and the checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from asin_platform.schemas import MART_TIMESERIES_DAILY

FLAG_COLUMNS = ("flag_bsr_invalid", "flag_rating_invalid", "flag_price_invalid", "flag_price_spike")
# Reasons that reject a whole payload (its body could not be used at all).
PAYLOAD_LEVEL_REASONS = ("malformed_json", "unexpected_shape")


@dataclass(frozen=True)
class QualityReport:
    """What one standardise call did, for materialisation metadata and the checks.

    ``coverage`` = ``covered_rows / tracked_asins``, where ``tracked_asins`` is the number of
    distinct (site, date, asin) in the batch's universe and ``covered_rows`` the mart rows that
    still carry a ``bsr_root`` or a ``price`` after invalid values were nulled (a row with neither
    tells nothing about the product that day). Mart rows are always tracked ASINs, so coverage is in
    [0, 1]; it is 0.0 when nothing is tracked (no universe = nothing covered). ``by_slice`` holds the
    same numbers per (site, date).
    """

    tracked_asins: int
    mart_rows: int
    covered_rows: int
    coverage: float
    duplicates_dropped: int  # mart: points superseded by a later fetch of the same (site, date, asin)
    duplicates_dropped_by_table: dict[str, int]
    invalid_by_flag: dict[str, int]  # mart rows with each flag set
    quarantined_by_reason: dict[str, int]  # quarantine rows (parser + standardise) per reason
    quarantined_total: int
    malformed_payloads: int  # distinct payloads rejected whole (malformed_json, unexpected_shape)
    by_slice: pl.DataFrame = field(repr=False)

    def as_metadata(self) -> dict[str, int | float]:
        """Flat ``{name: number}`` for Dagster materialisation metadata (no nested values)."""
        flat: dict[str, int | float] = {
            "tracked_asins": self.tracked_asins,
            "mart_rows": self.mart_rows,
            "covered_rows": self.covered_rows,
            "coverage": round(self.coverage, 6),
            "duplicates_dropped": self.duplicates_dropped,
            "quarantined_total": self.quarantined_total,
            "malformed_payloads": self.malformed_payloads,
        }
        flat.update({f"invalid.{flag}": n for flag, n in self.invalid_by_flag.items()})
        flat.update({f"quarantined.{reason}": n for reason, n in self.quarantined_by_reason.items()})
        flat.update({f"duplicates_dropped.{t}": n for t, n in self.duplicates_dropped_by_table.items()})
        return flat

    def as_markdown(self, max_slices: int = 60) -> str:
        """Summary, quarantine reasons and the per-slice breakdown as Markdown tables."""
        lines = [
            "| metric | value |",
            "|---|---:|",
            f"| tracked ASINs | {self.tracked_asins} |",
            f"| mart rows | {self.mart_rows} |",
            f"| covered rows (BSR or price) | {self.covered_rows} |",
            f"| coverage | {self.coverage:.2%} |",
            f"| duplicates dropped | {self.duplicates_dropped} |",
            f"| quarantined | {self.quarantined_total} |",
            f"| malformed payloads | {self.malformed_payloads} |",
        ]
        lines += [f"| {flag} | {n} |" for flag, n in self.invalid_by_flag.items()]
        if self.quarantined_by_reason:
            lines += ["", "| quarantine reason | rows |", "|---|---:|"]
            lines += [f"| {reason} | {n} |" for reason, n in self.quarantined_by_reason.items()]
        if self.by_slice.height:
            columns = self.by_slice.columns
            lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            for row in self.by_slice.head(max_slices).iter_rows():
                cells = [f"{v:.2%}" if isinstance(v, float) else str(v) for v in row]
                lines.append("| " + " | ".join(cells) + " |")
            if self.by_slice.height > max_slices:
                lines.append(f"\n({self.by_slice.height - max_slices} more slices not shown)")
        return "\n".join(lines)


def quality_report(
    *,
    universe: pl.DataFrame,
    mart: pl.DataFrame,
    quarantine: pl.DataFrame,
    placed_per_slice: pl.DataFrame,
    duplicates: dict[str, int],
) -> QualityReport:
    keys = ["site", "date"]
    covered = pl.col("bsr_root").is_not_null() | pl.col("price").is_not_null()
    slice_keys = (
        pl.concat([universe.select(keys), mart.select(keys), quarantine.select(keys)]).drop_nulls().unique()
    )
    by_slice = (
        slice_keys.join(universe.group_by(keys).agg(tracked_asins=pl.len()), on=keys, how="left")
        .join(
            mart.group_by(keys).agg(mart_rows=pl.len(), covered_rows=covered.sum()),
            on=keys,
            how="left",
        )
        .join(placed_per_slice, on=keys, how="left")
        .join(quarantine.group_by(keys).agg(quarantined=pl.len()), on=keys, how="left")
        .with_columns(
            pl.col("tracked_asins", "mart_rows", "covered_rows", "_placed", "quarantined")
            .fill_null(0)
            .cast(pl.Int64)
        )
        .with_columns(
            coverage=pl.when(pl.col("tracked_asins") > 0)
            .then(pl.col("covered_rows") / pl.col("tracked_asins"))
            .otherwise(0.0),
            duplicates_dropped=pl.col("_placed") - pl.col("mart_rows"),
        )
        .select(
            "site",
            "date",
            "tracked_asins",
            "mart_rows",
            "covered_rows",
            "coverage",
            "duplicates_dropped",
            "quarantined",
        )
        .sort(keys)
    )
    tracked = universe.height
    covered_rows = int(mart.select(covered.sum()).item())
    by_reason = quarantine.group_by("reason").agg(pl.len()).sort("reason")
    return QualityReport(
        tracked_asins=tracked,
        mart_rows=mart.height,
        covered_rows=covered_rows,
        coverage=covered_rows / tracked if tracked else 0.0,
        duplicates_dropped=duplicates[MART_TIMESERIES_DAILY.name],
        duplicates_dropped_by_table=duplicates,
        invalid_by_flag={flag: int(mart[flag].sum()) for flag in FLAG_COLUMNS},
        quarantined_by_reason=dict(
            zip(by_reason["reason"].to_list(), by_reason["len"].to_list(), strict=True)
        ),
        quarantined_total=quarantine.height,
        malformed_payloads=quarantine.filter(pl.col("reason").is_in(PAYLOAD_LEVEL_REASONS))[
            "payload_id"
        ].n_unique(),
        by_slice=by_slice,
    )
