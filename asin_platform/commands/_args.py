"""Argument helpers shared by the subcommand modules: dates, the (sites x date range) options and
their validation against the settings (the partitions that exist), LightGBM ``--params``, the
wording of a lever flag out of range, and the tables a command reads, writes or prints."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from asin_platform.errors import UserError
from asin_platform.levers import FIRST_DAY, LAST_DAY, LeverError, json_object
from asin_platform.settings import Settings


def yesterday() -> date:
    """The newest partition: a day's data exists once the day is over (UTC)."""
    return datetime.now(UTC).date() - timedelta(days=1)


def parse_date(text: str) -> date:
    """A date flag's value, YYYY-MM-DD. Only the form is checked here (argparse's own message): the
    range, ``levers.FIRST_DAY`` .. ``LAST_DAY``, is ``check_day``'s, one line naming the flag."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def check_day(flag: str, day: date | None) -> None:
    """``day`` (given by ``flag``; None = not given) within ``levers.FIRST_DAY`` .. ``LAST_DAY``, so
    the windows a command reaches back and forward from it stay inside Python's dates; else a
    UserError naming the flag and the range (0001-01-05 was an OverflowError traceback)."""
    if day is not None and not FIRST_DAY <= day <= LAST_DAY:
        raise UserError(f"{flag} {day} is outside {FIRST_DAY}..{LAST_DAY}: give a date in that range")


def add_range_args(
    parser: argparse.ArgumentParser, *, default_start: str = "--end", default_end: str = "yesterday, UTC"
) -> None:
    parser.add_argument("--start", type=parse_date, help=f"first day (default: {default_start})")
    parser.add_argument("--end", type=parse_date, help=f"last day (default: {default_end})")
    parser.add_argument("--sites", nargs="+", help="sites (default: all configured)")


@dataclass(frozen=True)
class RangeRequest:
    sites: list[str]
    start: date
    end: date


def check_sites(sites: list[str] | None, settings: Settings) -> list[str]:
    """``sites`` (default: every configured site); an unknown one is a UserError naming the valid ones."""
    if not sites:
        return list(settings.sites)
    unknown = [s for s in sites if s not in settings.sites]
    if unknown:
        raise UserError(
            f"unknown site(s) {', '.join(unknown)}: the configured sites are {', '.join(settings.sites)} "
            "(pick from them with --sites, or add the site to `sites` in the settings)"
        )
    return list(dict.fromkeys(sites))


def check_start_end(start: date | None, end: date | None) -> None:
    """``--start`` and ``--end`` (None = not given) each within ``check_day``'s range, in order: the
    check of every command that takes them, before anything runs."""
    check_day("--start", start)
    check_day("--end", end)
    if start is not None and end is not None and start > end:
        raise UserError(f"--start {start} is after --end {end}: give a --start on or before --end")


def check_dates(start: date | None, end: date | None, settings: Settings) -> tuple[date, date]:
    """[start, end] defaulting to yesterday; checked against the partitions before anything runs."""
    check_start_end(start, end)  # as given: a default must not be named as the flag out of range
    end = end or yesterday()
    start = start or end
    check_start_end(start, end)
    first, last = settings.partitions_start, yesterday()
    if start < first or end > last:
        raise UserError(
            f"{start}..{end} is outside the partitions {first}..{last}: pick --start/--end in that range "
            "(the first day is `partitions_start` in the settings; today's partition exists tomorrow)"
        )
    return start, end


def range_request(args: argparse.Namespace, settings: Settings) -> RangeRequest:
    """The validated (sites, start, end) of the options ``add_range_args`` added."""
    sites = check_sites(args.sites, settings)
    start, end = check_dates(args.start, args.end, settings)
    return RangeRequest(sites, start, end)


def lever_flag_error(exc: LeverError, flags: Mapping[str, str] | None = None) -> UserError:
    """A flag out of its range (``overlaid`` of ``RankerLevers``, ``BacktestWindow``, ``TuningRun``)
    as the user's one line, named by the flag they typed: ``--refit-factor -1.0: input should be
    greater than or equal to 0``. A flag is the field's name in kebab case (``--rounds``,
    ``--negative-fraction``, ...) unless ``flags`` names it otherwise (``{"every_days": "--every"}``)."""
    flag = (flags or {}).get(exc.name) or f"--{exc.name.replace('_', '-')}"
    # a flag of several values (--split-fractions) as it was typed
    value = " ".join(map(str, exc.value)) if isinstance(exc.value, list | tuple) else exc.value
    return UserError(f"{flag} {value}: {exc.reason}")


def parse_params(text: str | None) -> dict[str, Any]:
    """``--params`` of train-rank, tune-rank and backtest: LightGBM params as a JSON object, inline
    or in a JSON file. Empty or unset is ``{}``; anything else that is not a JSON object (bad JSON,
    a file that is missing or unreadable, a JSON array) is a UserError of one line. The JSON is
    read by ``levers.json_object``, as the assets' ``params_json`` is: the same reasons."""
    if not text:
        return {}
    raw, shown = text, None
    # inline JSON is never looked up as a path: a long object is longer than a file name may be,
    # and stat() on it fails with ENAMETOOLONG instead of returning "no such file"
    if not text.lstrip().startswith("{"):
        try:
            raw, shown = Path(text).read_text(), f"file {text}"
        except FileNotFoundError:
            pass  # neither a file nor JSON: json_object says why it is not JSON either
        except OSError as exc:
            raise UserError(f"--params {text}: cannot read the file: {exc.strerror or exc}") from None
    try:
        return json_object("params", raw)
    except LeverError as exc:
        # inline text may also be the path of a JSON file: say so where the advice ends
        also = "" if shown else ", or the path of a JSON file"
        raise UserError(f"--params {shown or exc.value}: {exc.reason}{also}") from None


def existing_file(path: str | Path, flag: str) -> Path:
    """``path`` if it is a file; otherwise a UserError naming ``flag`` (read before anything else is)."""
    p = Path(path)
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise UserError(f"{flag} {p} {what}: give the path of an existing CSV or Parquet file")
    return p


def scan_table(path: str | Path, flag: str) -> pl.LazyFrame:
    """A CSV (by its suffix) or Parquet file given on the command line, as a lazy scan."""
    p = existing_file(path, flag)
    if p.suffix.lower() == ".csv":
        return pl.scan_csv(p, try_parse_dates=True)
    return pl.scan_parquet(p)


def read_table(path: str | Path, flag: str, columns: list[str] | None = None) -> pl.DataFrame:
    """``scan_table`` read, ``columns`` only if given."""
    table = scan_table(path, flag)
    return (table.select(columns) if columns else table).collect()


def write_table(frame: pl.DataFrame, path: str | Path) -> Path:
    """``frame`` as CSV (by the suffix) or Parquet at ``path``, its folder made."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".csv":
        frame.write_csv(p)
    else:
        frame.write_parquet(p)
    return p


def print_frame(frame: pl.DataFrame) -> None:
    """A summary table on stdout, wide enough not to elide the columns a user asked for."""
    with pl.Config(tbl_rows=50, tbl_cols=30, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(frame)
