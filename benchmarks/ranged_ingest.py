"""Ranged ingestion: what a 90-day backfill of 1,000 ASINs x 2 sites costs, day by day vs ranged.

Counts, not speed: requests per site-day of the unified API (all routes, and the history routes
``timeseries`` + ``reviews`` alone) and Keepa tokens per product, from the clients' own reports,
against the in-process simulator (``SimulatedUpstreamClient`` / ``SimulatedKeepaClient``, the
production clients over an ASGI transport; Keepa on a virtual clock, so token waits cost no time).

- before: ``fetch_day`` per (site, day), as every partition did before issue 12. Its cost per
  site-day does not depend on the range, so it is measured on the first ``--sample-days`` days and
  reported per site-day (unified) / per product per backfill run (Keepa: per product-day x days).
- after: ``fetch_range`` per site over the whole range, what a ranged run now does.

Targets (issue 12): Keepa <= 1.1 tokens per product per backfill run; unified history requests per
site-day down >= 10x.

Reproduce (repo root, ~2 min):
    .venv/bin/python benchmarks/ranged_ingest.py --write-docs
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from asin_platform.resources.upstream import DayFetch
from asin_platform.simulator.clients import (
    SimulatedKeepaClient,
    SimulatedUpstreamClient,
    reset_simulated_keepa,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION = "Ranged ingestion"
SITES = ["US", "UK"]
HISTORY = ("/timeseries", "/reviews")


def _requests(fetches: list[DayFetch]) -> tuple[int, int]:
    """(all requests, history requests) of ``fetches``."""
    responses = [r for f in fetches for r in f.responses]
    return len(responses), sum(r.endpoint.endswith(HISTORY) for r in responses)


def _unified(asins: int, days: list[date], sample: int) -> dict[str, float]:
    client = SimulatedUpstreamClient(sim_asins_per_site=asins, sim_sites=SITES, server_qpm=10**7, qpm=10**7)
    began = time.perf_counter()
    before = [client.fetch_day(site, day) for site in SITES for day in days[:sample]]
    before_s = time.perf_counter() - began
    began = time.perf_counter()
    after = [f for site in SITES for f in client.fetch_range(site, days)]
    after_s = time.perf_counter() - began
    (b_all, b_hist), (a_all, a_hist) = _requests(before), _requests(after)
    b_days, a_days = len(SITES) * sample, len(SITES) * len(days)
    return {
        "before_per_site_day": b_all / b_days,
        "before_history_per_site_day": b_hist / b_days,
        "after_per_site_day": a_all / a_days,
        "after_history_per_site_day": a_hist / a_days,
        "before_s_per_site_day": before_s / b_days,
        "after_s_per_site_day": after_s / a_days,
    }


def _keepa(asins: int, days: list[date], sample: int) -> dict[str, float]:
    reset_simulated_keepa()

    def client() -> SimulatedKeepaClient:
        return SimulatedKeepaClient(
            sim_asins_per_site=asins, sim_sites=SITES, token_budget=10**9, sim_refill_rate=10**6
        )

    before_client = client()
    before = [before_client.fetch_day(site, day) for site in SITES for day in days[:sample]]
    after = [f for site in SITES for f in client().fetch_range(site, days)]

    def tokens(fetches: list[DayFetch]) -> int:
        return sum(getattr(f.report, "tokens_consumed", 0) for f in fetches)

    products_after = len({(f.site, a) for f in after for a in f.universe})
    product_days_before = sum(len(f.universe) for f in before)
    per_product_day = tokens(before) / max(product_days_before, 1)
    return {
        "before_tokens_per_product_day": per_product_day,
        "before_tokens_per_product_run": per_product_day * len(days),
        "after_tokens": tokens(after),
        "after_products": products_after,
        "after_tokens_per_product_run": tokens(after) / max(products_after, 1),
        "after_product_requests": sum(r.endpoint == "/product" for f in after for r in f.responses),
    }


def _markdown(
    args: argparse.Namespace, u: dict[str, float], k: dict[str, float], load: tuple[float, float]
) -> str:
    cut = u["before_history_per_site_day"] / max(u["after_history_per_site_day"], 1e-9)
    ok_u, ok_k = cut >= 10, k["after_tokens_per_product_run"] <= 1.1
    return "\n".join(
        [
            f"## {SECTION}",
            "",
            f"A {args.days}-day backfill of {args.asins:,} ASINs x {len(SITES)} sites ({', '.join(SITES)}), "
            "counted from the clients' own reports against the in-process simulator (`benchmarks/ranged_ingest.py`). "
            f"*Before*: `fetch_day` per (site, day), what every partition did before ranged runs, measured on "
            f"the first {args.sample_days} days (its cost per site-day does not depend on the range). *After*: "
            "`fetch_range` per site over the whole range, what a ranged run does now (history once per ASIN batch, "
            'Keepa `/product` once per product; docs/architecture.md, "Range payloads").',
            "",
            f"Reproduce: `.venv/bin/python benchmarks/ranged_ingest.py --write-docs`. Measured "
            f"{datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load average {load[0]:.1f} before / {load[1]:.1f} after.",
            "",
            "| source | figure | before | after | change |",
            "|---|---|---|---|---|",
            f"| unified | requests per site-day (all routes) | {u['before_per_site_day']:.2f} | "
            f"{u['after_per_site_day']:.2f} | {u['before_per_site_day'] / u['after_per_site_day']:.1f}x fewer |",
            f"| unified | history requests (timeseries + reviews) per site-day | "
            f"{u['before_history_per_site_day']:.2f} | {u['after_history_per_site_day']:.3f} | {cut:.0f}x fewer |",
            f"| unified | client wall time per site-day (in-process, s) | {u['before_s_per_site_day']:.3f} | "
            f"{u['after_s_per_site_day']:.3f} | |",
            f"| keepa | tokens per product per {args.days}-day backfill run | "
            f"{k['before_tokens_per_product_run']:.1f} ({k['before_tokens_per_product_day']:.3f} a product-day) | "
            f"{k['after_tokens_per_product_run']:.3f} ({k['after_tokens']:,.0f} tokens, {k['after_products']:,} "
            f"products, {k['after_product_requests']:.0f} requests) | "
            f"{k['before_tokens_per_product_run'] / k['after_tokens_per_product_run']:.0f}x fewer |",
            "",
            f"Targets: unified history requests per site-day down >= 10x: {cut:.0f}x, **{'met' if ok_u else 'NOT met'}**; "
            f"Keepa <= 1.1 tokens per product per backfill run: {k['after_tokens_per_product_run']:.3f}, "
            f"**{'met' if ok_k else 'NOT met'}**.",
            "",
            "How to read it: the snapshot routes (universe, product core, keyword ranks) stay per day, so the "
            "unified total falls by about half while the history routes fall by the range length divided by "
            "the pages of a range. Keepa charges per product returned whatever `days` is (plus a token for "
            "the ~1 in 14 products whose rating it refreshes with `rating=1`), so a range pays each product "
            "once; a daily run (one day) still asks only `days=3` and pays one product-day.",
            "",
        ]
    )


def _write_docs(text: str) -> None:
    doc = DOCS.read_text()
    pattern = re.compile(rf"^## {re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    doc = pattern.sub(text, doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + text
    DOCS.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--asins", type=int, default=1000, help="ASINs per site in the simulated market")
    parser.add_argument(
        "--sample-days", type=int, default=5, help="days the day-by-day 'before' is measured on"
    )
    parser.add_argument("--end", type=date.fromisoformat, default=date(2025, 9, 30))
    parser.add_argument(
        "--write-docs", action="store_true", help=f"replace the '{SECTION}' section of {DOCS}"
    )
    args = parser.parse_args(argv)
    days = [args.end - timedelta(days=args.days - 1 - i) for i in range(args.days)]
    load_before = os.getloadavg()[0]
    unified = _unified(args.asins, days, args.sample_days)
    keepa = _keepa(args.asins, days, args.sample_days)
    text = _markdown(args, unified, keepa, (load_before, os.getloadavg()[0]))
    print(text)
    if args.write_docs:
        _write_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
