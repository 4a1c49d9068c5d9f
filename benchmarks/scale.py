"""Scale benchmark: a 1M-ASIN site, per partition and over a range, with peak RSS per phase.

    .venv/bin/python benchmarks/scale.py                       # 1M ASINs (long: see docs/benchmarks.md)
    .venv/bin/python benchmarks/scale.py --asins 50000 --backfill-asins 20000 --backfill-days 90

The synthetic market is benchmarks/features_bench.py's (log-BSR random walks with breakouts, price
steps and promotions, reviews, offers, listings, 0-4 ranked keywords per ASIN), generated in blocks
of at most 6M ASIN-days, then written as one parquet file per day in the columnar copies' layout
(one site, not timed). Every phase runs in its own child process, so its
peak RSS (``os.wait4``'s ru_maxrss) is its own:

* ``compute-partition``: features + score of the last day of the ``--asins`` site through
  ``core.chunking.iter_features`` over lazy parquet scans (reading included), chunk budget
  ``--max-cells`` (default: the settings' memory-derived one);
* ``compute-range``: the same over the last ``--range-days`` days, each chunk's features and scores
  written to parquet as they come (as the assets write slices);
* ``backfill``: features of ``--backfill-days`` days of a ``--backfill-asins`` site, chunked;
* per warehouse backend (``--backends duckdb postgres``): ``load`` (the lookback window, not
  reported), then for the partition: ``mart write`` (the day's mart and keywords slices in one
  transaction, as the mart asset writes them, with their parquet copies: ``storage/columnar.py``),
  ``mart read`` / ``keywords read`` (the 31-day window: lazy scans of the copies, so only the
  version lookup is timed here and the file reads fall in ``features``; with ``--no-columnar``
  ``Warehouse.read`` of the whole window), ``features`` (chunked compute on the window),
  ``features write``, ``score`` (read the day's features, score, write), ``exports`` (the top
  candidates view to CSV) and ``predictions`` (LightGBM scoring of every ASIN + write).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SITE = "US"
END = date(2026, 6, 30)
LOOKBACK = 30
SCORE_DAYS = 7  # settings.scale.score_chunk_days
GEN_CELLS = 6_000_000  # ASINs x days generated at once: ~2 GB of numpy matrices at the peak
PG_URL = os.environ.get("ASIN_PLATFORM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/h_scale")


# ------------------------------------------------------------------------------------ generation


def generate(folder: Path, n_asins: int, n_days: int) -> None:
    """``n_asins`` x ``n_days`` (ending END) to ``folder``/{mart,keywords}/<date>.parquet: one file per
    day in the layout of the mart's columnar copies (``storage.columnar.write_slice_parquet``: key
    order, bounded row groups), which is what ``features_daily`` scans in production. Generated in
    blocks of GEN_CELLS ASIN-days, ASINs renamed B<block><7 digits> so they stay distinct."""
    import shutil

    from features_bench import synth_market

    from asin_platform.schemas import FACT_KEYWORDS, MART_TIMESERIES_DAILY
    from asin_platform.storage.columnar import write_slice_parquet

    if (folder / "done").exists():
        return
    staging = folder / "blocks"
    for sub in ("mart", "keywords"):
        (staging / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub).mkdir(parents=True, exist_ok=True)
    size = max(1000, GEN_CELLS // n_days)
    for block, first in enumerate(range(0, n_asins, size)):
        mart, kw = synth_market(min(size, n_asins - first), n_days, end=END, seed=100 + block)
        rename = pl.lit(f"B{block:02d}") + pl.col("asin").str.slice(3)
        mart.with_columns(asin=rename).write_parquet(staging / "mart" / f"part-{block:03d}.parquet")
        kw.with_columns(asin=rename).write_parquet(staging / "keywords" / f"part-{block:03d}.parquet")
        del mart, kw
    for sub, table in (("mart", MART_TIMESERIES_DAILY), ("keywords", FACT_KEYWORDS)):
        blocks, key = pl.scan_parquet(staging / sub / "*.parquet"), list(table.key)
        for day in days_ending(END, n_days):
            write_slice_parquet(
                blocks.filter(pl.col("date") == day).collect().sort(key), folder / sub / f"{day}.parquet"
            )
    shutil.rmtree(staging)
    (folder / "done").write_text("ok\n")


def scans(folder: Path) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    return pl.scan_parquet(folder / "mart" / "*.parquet"), pl.scan_parquet(folder / "keywords" / "*.parquet")


def days_ending(end: date, n: int) -> list[date]:
    return [end - timedelta(days=i) for i in range(n - 1, -1, -1)]


# ------------------------------------------------------------------------------- child phases


def _rss_now_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child_compute(
    folder: Path, targets: list[date], max_cells: int | None, out: Path | None, score: bool
) -> dict:
    """Chunked features (+ score) of ``targets`` from the parquet scans; chunks go to ``out``."""
    from asin_platform.core.chunking import iter_features, iter_scores
    from asin_platform.core.sales import default_calibration
    from asin_platform.settings import ScoreWeights

    mart, kw = scans(folder)
    weights, cal = ScoreWeights(), default_calibration([SITE])
    result: dict[str, Any] = {"features_s": 0.0, "score_s": 0.0, "write_s": 0.0, "rows": 0, "chunks": 0}
    started, cpu = time.perf_counter(), time.process_time()
    tick = started
    for chunk in iter_features(mart, kw, targets, lookback=LOOKBACK, calibration=cal, max_cells=max_cells):
        now = time.perf_counter()
        result["features_s"] += now - tick
        # whole days at a time: the reason text makes a score row ~3x a feature row in memory
        scores = (
            pl.concat(
                iter_scores(chunk.lazy(), chunk["date"].unique().to_list(), SCORE_DAYS, weights=weights)
            )
            if score and chunk.height
            else None
        )
        tick = time.perf_counter()
        result["score_s"] += tick - now
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            chunk.write_parquet(out / f"features-{result['chunks']:04d}.parquet")
            if scores is not None:
                scores.write_parquet(out / f"scores-{result['chunks']:04d}.parquet")
        result["rows"] += chunk.height
        result["chunks"] += 1
        del chunk, scores
        now = time.perf_counter()
        result["write_s"] += now - tick
        tick = now
    result["total_s"] = time.perf_counter() - started
    result["cpu_s"] = time.process_time() - cpu  # all threads: on a loaded machine wall >> cpu / cores
    return result


def _warehouse(backend: str, folder: Path) -> Any:
    from asin_platform.resources.warehouse import Warehouse

    if backend == "duckdb":
        return Warehouse(url=str(folder / "warehouse.duckdb"))
    return Warehouse(url=PG_URL, pg_schema=f"scale_{folder.name}")


def _store(backend: str, folder: Path, columnar: bool) -> Any:
    """The artifact store holding the mart's parquet copies (None: ``--no-columnar``)."""
    from asin_platform.storage.store import ArtifactStore

    return ArtifactStore.at(folder / f"artifacts_{backend}") if columnar else None


def _write_mart_day(wh: Any, store: Any, mart: pl.DataFrame, kw: pl.DataFrame, d: date) -> None:
    """As the mart asset writes a day: mart and keywords slices (and their copies) in one transaction."""
    from asin_platform.storage import columnar

    with wh.session(), columnar.copies(store) as copies, wh.transaction() as tx:
        copies.replace_slices(tx, "mart_timeseries_daily", mart, sites=[SITE], start=d, end=d)
        copies.replace_slices(tx, "fact_keywords", kw, sites=[SITE], start=d, end=d)


def child_load(folder: Path, backend: str, days: list[date], columnar: bool) -> dict:
    """The lookback window into the warehouse (and its copies), a day at a time (not reported)."""
    mart, kw = scans(folder)
    wh = _warehouse(backend, folder)
    store = _store(backend, folder, columnar)
    started = time.perf_counter()
    for d in days:
        day_kw = kw.filter(pl.col("date") == d).collect()
        _write_mart_day(wh, store, mart.filter(pl.col("date") == d).collect(), day_kw, d)
    return {"load_s": time.perf_counter() - started}


def _toy_model(features: pl.DataFrame) -> Any:
    """A small LightGBM model over every feature (predictions need one; its quality is irrelevant)."""
    import lightgbm as lgb

    from asin_platform.core.features import FEATURE_COLUMNS
    from asin_platform.core.ranker import feature_matrix

    sample = features.head(50_000)
    target = sample["bsr_log_slope_14d"].fill_null(0.0).to_numpy() * -1.0
    data = lgb.Dataset(
        feature_matrix(sample, list(FEATURE_COLUMNS)), label=target, feature_name=list(FEATURE_COLUMNS)
    )
    return lgb.train(
        {"objective": "regression", "num_leaves": 31, "verbosity": -1}, data, num_boost_round=100
    )


def child_partition(
    folder: Path, backend: str, day: date, max_cells: int | None, columnar: bool, reasons: int
) -> dict:
    """One partition end to end on a warehouse, each step timed (see the module docstring)."""
    from asin_platform.assets.exports import top_candidates_frame
    from asin_platform.core.chunking import build_features_chunked
    from asin_platform.core.predict import score_features
    from asin_platform.core.sales import default_calibration
    from asin_platform.core.score import score_baseline
    from asin_platform.settings import ScoreWeights
    from asin_platform.storage.columnar import scan_window

    mart_scan, kw_scan = scans(folder)
    wh = _warehouse(backend, folder)
    store = _store(backend, folder, columnar)
    t: dict[str, Any] = {"columnar": columnar}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        t[f"{name}_s"] = now - clock[0]
        t[f"{name}_rss_mb"] = _rss_now_mb()
        clock[0] = time.perf_counter()

    day_rows = mart_scan.filter(pl.col("date") == day).collect()
    day_kw = kw_scan.filter(pl.col("date") == day).collect()
    clock[0] = time.perf_counter()
    _write_mart_day(wh, store, day_rows, day_kw, day)  # mart + keywords (+ their parquet copies)
    lap("mart_write")
    del day_rows, day_kw
    lo = day - timedelta(days=LOOKBACK)
    if store is not None:  # lazy scans of the copies: the read happens inside the features step
        mart = scan_window(wh, store, "mart_timeseries_daily", SITE, lo, day)
        lap("mart_read")
        kw = scan_window(wh, store, "fact_keywords", SITE, lo, day)
        lap("keywords_read")
        t["window_rows"] = mart.select(pl.len()).collect().item()
    else:
        mart = wh.read("mart_timeseries_daily", sites=[SITE], start=lo, end=day).lazy()
        lap("mart_read")
        kw = wh.read("fact_keywords", sites=[SITE], start=lo, end=day).lazy()
        lap("keywords_read")
        t["window_rows"] = mart.select(pl.len()).collect().item()
    clock[0] = time.perf_counter()
    cal = default_calibration([SITE])
    feats = build_features_chunked(mart, kw, [day], lookback=LOOKBACK, calibration=cal, max_cells=max_cells)
    lap("features")
    del mart, kw
    with wh.session():
        wh.replace_slices("features_daily", feats, sites=[SITE], start=day, end=day)
    lap("features_write")
    model = _toy_model(feats)  # not timed: a stand-in for the trained ranker
    del feats
    clock[0] = time.perf_counter()
    rows = wh.read("features_daily", sites=[SITE], start=day, end=day)
    with wh.session():
        t["score_rows"] = wh.replace_slices(
            "score_baseline_daily", score_baseline(rows, ScoreWeights()), sites=[SITE], start=day, end=day
        )
    lap("score")
    top_candidates_frame(wh, SITE, day, 100).write_csv(folder / f"top_candidates_{backend}.csv")
    lap("exports")
    rows = wh.read("features_daily", sites=[SITE], start=day, end=day)
    pred = score_features(model, rows, model_version="bench", scored_at=datetime.now(UTC), reasons=reasons)
    with wh.session():
        t["prediction_rows"] = wh.replace_slices(
            "predictions_rank_daily", pred, sites=[SITE], start=day, end=day
        )
    lap("predictions")
    return t


def child_main(spec: dict) -> None:
    folder = Path(spec["folder"])
    kind = spec["kind"]
    if kind == "generate":
        generate(folder, spec["asins"], spec["days"])
        result: dict = {}
    elif kind == "compute":
        targets = [date.fromisoformat(d) for d in spec["targets"]]
        out = Path(spec["out"]) if spec.get("out") else None
        result = child_compute(folder, targets, spec.get("max_cells"), out, spec.get("score", True))
    elif kind == "load":
        result = child_load(
            folder, spec["backend"], [date.fromisoformat(d) for d in spec["days"]], spec.get("columnar", True)
        )
    else:
        result = child_partition(
            folder,
            spec["backend"],
            date.fromisoformat(spec["day"]),
            spec.get("max_cells"),
            spec.get("columnar", True),
            spec.get("reasons", 0),
        )
    print("RESULT " + json.dumps(result))


# ------------------------------------------------------------------------------------- parent


def run_child(spec: dict) -> dict:
    """``spec`` in a fresh interpreter; its result plus wall time and its own peak RSS (MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(spec, default=str)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so the child's own rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child {spec['kind']} failed ({proc.returncode})")
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["wall_s"] = time.perf_counter() - started
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def _mb(v: float) -> str:
    return f"{v / 1024:.2f} GB" if v >= 1024 else f"{v:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--asins", type=int, default=1_000_000, help="ASINs of the partition / range site")
    parser.add_argument("--range-days", type=int, default=30, help="days of the ranged compute (0 = skip)")
    parser.add_argument("--backfill-asins", type=int, default=100_000)
    parser.add_argument("--backfill-days", type=int, nargs="*", default=[90, 365], help="backfill lengths")
    parser.add_argument(
        "--backends", nargs="*", default=["duckdb", "postgres"], choices=["duckdb", "postgres"]
    )
    parser.add_argument("--max-cells", type=int, default=None, help="chunk budget (default: from memory)")
    parser.add_argument(
        "--no-columnar",
        dest="columnar",
        action="store_false",
        help="warehouse phase: read the window from the warehouse, no parquet copies of the mart "
        "(settings.scale.columnar_mart false)",
    )
    parser.add_argument(
        "--prediction-reasons",
        type=int,
        default=0,
        help="top feature contributions per prediction row (TreeSHAP for the day's top "
        "scale.reasons_per_query rows, path attribution for the rest: ~20 CPU s at 1M rows, see "
        "docs/benchmarks.md; 0 by default, as the figures here were taken; the asset's default is "
        "core.explain's)",
    )
    parser.add_argument(
        "--skip-load",
        action="store_true",
        help="warehouse phase: keep the window an earlier run with this --work loaded",
    )
    parser.add_argument(
        "--skip-compute",
        action="store_true",
        help="only the warehouse phase (no parquet-scan partition, range or backfill cases)",
    )
    parser.add_argument(
        "--work", default="/tmp/asin_platform_scale", help="generated data (outside the repo)"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="write the Scale section of docs/benchmarks.md"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0

    work = Path(args.work)
    load_before = os.getloadavg()
    rows: list[tuple[str, dict]] = []

    def record(name: str, result: dict) -> None:
        rows.append((name, result))
        print(
            f"{name}: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})}",
            flush=True,
        )

    site_days = max(args.range_days, 1) + LOOKBACK
    # "days_": one file per day (the columnar copies' layout); "site_" folders of earlier runs held
    # ASIN-block files and are not reused
    site = work / f"days_{args.asins}_{site_days}"
    run_child({"kind": "generate", "folder": site, "asins": args.asins, "days": site_days})
    if not args.skip_compute:
        record(
            f"partition {args.asins:,} ASINs: features + score (parquet scan)",
            run_child({"kind": "compute", "folder": site, "targets": [END], "max_cells": args.max_cells}),
        )
    if args.range_days and not args.skip_compute:
        targets = days_ending(END, args.range_days)
        record(
            f"range {args.range_days} days x {args.asins:,} ASINs: features + score + parquet writes",
            run_child(
                {
                    "kind": "compute",
                    "folder": site,
                    "targets": targets,
                    "max_cells": args.max_cells,
                    "out": site / "out_range",
                }
            ),
        )
    for days in [] if args.skip_compute else args.backfill_days:
        folder = work / f"days_{args.backfill_asins}_{days + LOOKBACK}"
        run_child(
            {"kind": "generate", "folder": folder, "asins": args.backfill_asins, "days": days + LOOKBACK}
        )
        record(
            f"backfill {days} days x {args.backfill_asins:,} ASINs: features + parquet writes",
            run_child(
                {
                    "kind": "compute",
                    "folder": folder,
                    "targets": days_ending(END, days),
                    "max_cells": args.max_cells,
                    "out": folder / "out_backfill",
                    "score": False,
                }
            ),
        )
    for backend in args.backends:
        window = days_ending(END - timedelta(days=1), LOOKBACK)
        if not args.skip_load:
            load = run_child(
                {
                    "kind": "load",
                    "folder": site,
                    "backend": backend,
                    "days": window,
                    "columnar": args.columnar,
                }
            )
            print(f"{backend}: window loaded in {load['load_s']:.1f} s (not reported)", flush=True)
        how = "columnar copies" if args.columnar else "warehouse read"
        record(
            f"{backend} partition {args.asins:,} ASINs end to end ({how})",
            run_child(
                {
                    "kind": "partition",
                    "folder": site,
                    "backend": backend,
                    "day": END,
                    "max_cells": args.max_cells,
                    "columnar": args.columnar,
                    "reasons": args.prediction_reasons,
                }
            ),
        )
    load_after = os.getloadavg()
    (work / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    if args.write_docs:
        command = "benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_docs(rows, command.replace(" --write-docs", ""), load_before[0], load_after[0])
    return 0


def render(rows: list[tuple[str, dict]], command: str, load_before: float, load_after: float) -> str:
    lines = [
        "## Scale: 1M ASINs per site (issue 13)",
        "",
        f"`benchmarks/scale.py` (what each phase does: its docstring). Reproduce: `.venv/bin/python {command}`",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, polars {pl.__version__}; 1-minute load average {load_before:.1f} before / "
        f"{load_after:.1f} after (the machine is shared: other jobs compete for the same cores).",
        "",
        "| case | rows | chunks | features s | score s | writes s | total s | CPU s | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        if "features_s" in r and "mart_read_s" not in r:
            lines.append(
                f"| {name} | {r['rows']:,} | {r['chunks']} | {r['features_s']:.1f} | {r['score_s']:.1f} | "
                f"{r['write_s']:.1f} | {r['total_s']:.1f} | {r['cpu_s']:.1f} | {_mb(r['peak_rss_mb'])} |"
            )
    steps = (
        "mart_write",
        "mart_read",
        "keywords_read",
        "features",
        "features_write",
        "score",
        "exports",
        "predictions",
    )
    wh = [(n, r) for n, r in rows if "mart_read_s" in r]
    if wh:
        lines += [
            "",
            "| warehouse partition | "
            + " | ".join(s.replace("_", " ") + " s" for s in steps)
            + " | total s | peak RSS |",
            "|---|" + "---|" * (len(steps) + 2),
        ]
        for name, r in wh:
            total = sum(r[f"{s}_s"] for s in steps)
            lines.append(
                f"| {name} | "
                + " | ".join(f"{r[f'{s}_s']:.1f}" for s in steps)
                + f" | {total:.1f} | {_mb(r['peak_rss_mb'])} |"
            )
    return "\n".join(lines) + "\n"


def write_docs(rows: list[tuple[str, dict]], command: str, load_before: float, load_after: float) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    section = render(rows, command, load_before, load_after)
    head = "## Scale: 1M ASINs per site (issue 13)"
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + section + (text[nxt + 1 :] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print(f"-> {path}")


if __name__ == "__main__":
    raise SystemExit(main())
