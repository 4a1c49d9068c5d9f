"""``build-labels``: the seed's training/build_labels.py over Parquet files.

    build-labels   --mart X.parquet --features Y.parquet --output-dir artifacts/samples

It calls core.labels.build_samples, as the ``train_samples`` asset does; every label flag overrides
a setting (windows, thresholds, the samples' shares and stride) and is checked against that
setting's bounds before a file is read.
"""

from __future__ import annotations

import argparse

from asin_platform.commands._args import lever_flag_error, print_frame, read_table, scan_table
from asin_platform.levers import LeverError, SamplesWindow
from asin_platform.settings import Settings, Thresholds, Windows

# the label flags named by their settings (the rest are the fields' names in kebab case)
_LABEL_FLAGS = {"label_sales_ratio": "--sales-ratio", "label_bsr_pctl_gain": "--pctl-gain"}


def cmd_build_labels(args: argparse.Namespace, settings: Settings) -> int:
    from asin_platform.core.labels import build_samples

    # before the files are read, each flag against the bounds of what it overrides: the windows and
    # thresholds of the settings (an unset flag keeps the setting), the samples' shares and stride
    try:
        w = Windows.overlaid(
            settings.windows,
            {"observation": args.observation, "horizon": args.horizon, "embargo": args.embargo},
        )
        t = Thresholds.overlaid(
            settings.thresholds,
            {"label_sales_ratio": args.sales_ratio, "label_bsr_pctl_gain": args.pctl_gain},
        )
        window = SamplesWindow.overlaid(
            SamplesWindow(), {"split_fractions": args.split_fractions, "sample_every": args.sample_every}
        )
    except LeverError as exc:
        if exc.name == "embargo" and args.embargo is None:  # the setting's, under the --horizon given
            exc = LeverError(exc.name, f"{exc.value} (windows.embargo; no --embargo given)", exc.reason)
        raise lever_flag_error(exc, flags=_LABEL_FLAGS) from None
    samples = build_samples(
        read_table(args.features, "--features"),
        scan_table(args.mart, "--mart"),
        observation=w.observation,
        horizon=w.horizon,
        embargo=w.embargo,
        sales_ratio=t.label_sales_ratio,
        pctl_gain=t.label_bsr_pctl_gain,
        split_fractions=window.split_fractions,
        sample_every=window.sample_every,
    )
    paths = samples.write(args.output_dir)
    print_frame(samples.summary)
    for kind, path in paths.items():
        print(f"{kind:>8}: {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-labels", help="train_samples_{bin,rank,reg}.parquet from mart + features Parquet"
    )
    p.add_argument("--mart", required=True, help="mart_timeseries_daily Parquet")
    p.add_argument("--features", required=True, help="features_daily Parquet")
    p.add_argument("--output-dir", default="artifacts/samples")
    # the label flags' bounds are the settings' (settings.Windows, Thresholds) and the samples'
    p.add_argument(
        "--observation", type=int, help="observation window W in days (default: windows.observation)"
    )
    p.add_argument("--horizon", type=int, help="label horizon H in days (default: windows.horizon)")
    p.add_argument("--embargo", type=int, help="days between splits, >= H (default: windows.embargo)")
    p.add_argument(
        "--sales-ratio", type=float, help="r: future/past est. sales (default: thresholds.label_sales_ratio)"
    )
    p.add_argument(
        "--pctl-gain", type=float, help="p: BSR percentile gain (default: thresholds.label_bsr_pctl_gain)"
    )
    shares = SamplesWindow().split_fractions
    p.add_argument(
        "--split-fractions", type=float, nargs=3, default=list(shares), metavar=("TRAIN", "VALID", "TEST"),
        help=f"shares of the reference dates, each in (0, 1] (default {' '.join(map(str, shares))})",
    )  # fmt: skip
    p.add_argument(
        "--sample-every", type=int, default=SamplesWindow().sample_every,
        help=f"keep every n-th reference date, 1..365 (default {SamplesWindow().sample_every})",
    )  # fmt: skip
    p.set_defaults(func=cmd_build_labels)
