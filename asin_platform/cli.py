"""``asin-platform``: the demo, the bundled simulator, and the seed's scripts as subcommands.

Pipeline subcommands run the same Dagster assets as the UI (in process, recorded in the instance
at $DAGSTER_HOME); model subcommands call the same core functions the assets call. Each group of
subcommands lives in ``asin_platform/commands/<group>.py`` and registers itself with ``register``.

``main`` reads the settings once (after the subcommand's ``prepare`` step, which may set settings
variables such as the demo's market) and passes them down. A ``UserError`` (and a settings error)
is printed as one line on stderr with exit code 2; ``--debug`` or ``ASIN_PLATFORM_DEBUG=1`` adds the
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from asin_platform.commands import (
    backtest,
    checks,
    demo,
    export,
    features,
    labels,
    model,
    pipeline,
    simulator,
)
from asin_platform.commands import settings as settings_command
from asin_platform.errors import UserError
from asin_platform.settings import Settings

DEBUG_ENV = "ASIN_PLATFORM_DEBUG"
GROUPS = (demo, simulator, pipeline, features, export, labels, model, backtest, checks, settings_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asin-platform",
        description="Daily Amazon ASIN signals -> mart -> features -> Explosive Score -> LightGBM ranker.",
    )
    parser.add_argument(
        "--debug", action="store_true", help=f"show tracebacks of errors (or set {DEBUG_ENV}=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    for command in {id(p): p for p in sub.choices.values()}.values():  # aliases share a parser
        # also accepted after the subcommand; SUPPRESS keeps the top-level value when absent
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def load_settings_once() -> Settings:
    """The settings of this command (read after ``prepare``); a bad value is the user's to fix."""
    from asin_platform.settings import SettingsError, get_settings

    get_settings.cache_clear()
    try:
        return get_settings()
    except SettingsError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise UserError(
            " ".join(lines) + " (fix the settings file or the ASIN_PLATFORM__* variable; "
            "`asin-platform settings` checks them)"
        ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        prepare = getattr(args, "prepare", None)
        if prepare is not None:
            prepare(args)
        return int(args.func(args, load_settings_once()) or 0)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        print(f"asin-platform: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("asin-platform: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
