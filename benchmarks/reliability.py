"""Reliability under upstream faults (issue 11): the pipeline over a faulty upstream, reconciled cell
by cell against a clean run of the same market.

Runs ``raw_payloads`` + the mart (and their checks) through Dagster for 2 sites x 5 days against the
bundled simulator behind the seeded in-process proxy of ``asin_platform_tests/reliability/faults.py``:

- ``clean``: no faults, the reference;
- ``mixed``: 10% 429 (with Retry-After), 10% 5xx, 2% dropped connections, 1% answers slower than the
  client's timeout, 3% truncated bodies, 2% HTML instead of JSON;
- ``harsh``: 30% 429 + 20% 5xx;
- ``mutated``: 5% of the mutable JSON values replaced by a negative, a string, 10**12 or null.

Per scenario: faults injected by kind, HTTP calls, requests failed for good, rows lost / extra /
duplicated / cells differing per table against ``clean`` (mart, fact_reviews, fact_keywords,
dim_asin), mutated values delivered and caught (quarantined and kept out of the mart), wall time.

Reproduce (repo root, a few minutes on 2 cores):
    .venv/bin/python benchmarks/reliability.py --write-docs
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import tempfile
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asin_platform_tests.reliability.faults import (  # noqa: E402
    CLEAN,
    HARSH,
    MIXED,
    MUTATED,
    TABLES,
    RunOutcome,
    fault_settings,
    mutations_caught,
    reconcile,
    run_pipeline,
)

DOCS = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- reliability-figures:begin -->", "<!-- reliability-figures:end -->"


def _row(outcome: RunOutcome, clean: RunOutcome) -> dict[str, Any]:
    figures = reconcile(clean, outcome)
    delivered, missed = mutations_caught(outcome)
    return {
        "scenario": outcome.scenario.name,
        "success": outcome.success,
        "faults": ", ".join(f"{k} {v}" for k, v in sorted(outcome.faults_by_kind().items()) if v) or "-",
        "requests": outcome.raw.height,
        "http_calls": int(outcome.raw["attempts"].sum()),
        "failed_for_good": outcome.raw.height - outcome.raw["error"].null_count(),
        "rows_lost": sum(f["rows_lost"] for f in figures.values()),
        "duplicates": sum(f["duplicates"] for f in figures.values()),
        "cells_differing": sum(f["cells_differing"] for f in figures.values()),
        "mutated": f"{delivered - len(missed)}/{delivered}" if delivered else "-",
        "quarantined": outcome.quarantine.height,
        "wall_s": outcome.wall_s,
        "vs_clean": outcome.wall_s / clean.wall_s,
        "tables": figures,
    }


def _markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    clean_rows = ", ".join(f"{name} {f['clean_rows']:,}" for name, f in rows[0]["tables"].items())
    lines = [
        f"2 sites ({', '.join(args.sites)}) x {args.days} days from {args.start}, {args.asins} ASINs per site "
        f"(clean run: {clean_rows} rows); client timeout {args.timeout:g} s, Retry-After {args.retry_after:g} s, "
        f"retry budget 30 s per request, no Dagster step retries; {platform.processor() or platform.machine()}, "
        "2 shared cores.",
        "",
        "| scenario | run ok | faults injected | requests | HTTP calls | failed for good | rows lost "
        "| duplicates | cells differing | mutated values caught | quarantined | wall s | vs clean |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {'yes' if r['success'] else 'NO'} | {r['faults']} | {r['requests']} "
            f"| {r['http_calls']} | {r['failed_for_good']} | {r['rows_lost']} | {r['duplicates']} "
            f"| {r['cells_differing']} | {r['mutated']} | {r['quarantined']} | {r['wall_s']:.1f} "
            f"| {r['vs_clean']:.2f}x |"
        )
    lines += [
        "",
        "Rows lost / duplicates / cells differing are summed over "
        + ", ".join(f"`{t}`" for t in TABLES)
        + "; the mutated run differs from clean by design (the mutated cells are nulled and flagged).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", nargs=2, default=["US", "DE"])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2025, 3, 1))
    parser.add_argument("--asins", type=int, default=2000, help="simulated ASINs per site")
    parser.add_argument("--timeout", type=float, default=2.0, help="client timeout per request, s")
    parser.add_argument("--retry-after", type=float, default=0.1, help="Retry-After of the proxy's 429s, s")
    parser.add_argument("--write-docs", action="store_true", help=f"write the table into {DOCS.name}")
    args = parser.parse_args()

    settings = fault_settings(tuple(args.sites), args.asins, timeout_s=args.timeout)
    end = args.start + timedelta(days=args.days - 1)
    rows: list[dict[str, Any]] = []
    clean: RunOutcome | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in (CLEAN, MIXED, HARSH, MUTATED):
            scenario = replace(scenario, retry_after_s=args.retry_after)
            outcome = run_pipeline(scenario, settings, Path(tmp) / f"{scenario.name}.duckdb", args.start, end)
            clean = clean or outcome
            rows.append(_row(outcome, clean))
            r = rows[-1]
            print(
                f"{r['scenario']}: ok {r['success']}, {r['faults']}; rows lost {r['rows_lost']}, duplicates "
                f"{r['duplicates']}, cells differing {r['cells_differing']}, mutated caught {r['mutated']}, "
                f"{r['wall_s']:.1f} s ({r['vs_clean']:.2f}x clean)",
                flush=True,
            )
    table = _markdown(rows, args)
    print(table)
    if args.write_docs:
        text = DOCS.read_text()
        block = f"{BEGIN}\n{table}\n{END}"
        DOCS.write_text(re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S))
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
