"""A model's held-out windows: the sample rows it was validated and tested on, recorded on its card
when it is trained and found again in the samples when it is evaluated.

``train_samples`` can be rebuilt after a model was trained (another ``end_date``, ``days`` or
``sample_every``): the rows labelled valid / test are then no longer the model's held-out rows and may
lie on dates it trained on. ``held_out_record`` (card ``held_out``, written by ``ranker_model`` and the
CLI's ``train-rank``) keeps each held-out split's first and last reference date, its rows and a
fingerprint of them (keys and labels); ``held_out_rows`` takes the current samples' rows of those
dates, relabelled with the split they were, and returns them only when they are the rows the card
describes. Otherwise it raises ``HeldOutChanged``, one line saying what changed and what to do.

Cards written before ``held_out`` existed are still read: their ``data_window`` (each split's first and
last date) and ``rows`` (each split's rows) give the same windows, matched by row count (no
fingerprint). A card with neither (a hand-made one, an exported model without its card) leaves the
windows unverified: the current valid / test rows are used, refused only when they lie on dates the card
says the model trained on, and ``HeldOut.verified`` is None so the caller can say so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

HELD_OUT: tuple[str, ...] = ("valid", "test")
# what a fingerprint covers: the row keys and both labels (a relabelled row is another row)
FINGERPRINT_COLUMNS: tuple[str, ...] = ("site", "date", "asin", "relevance", "explodes")
NAMES = {"valid": "validation", "test": "test"}


class HeldOutChanged(ValueError):
    """The samples no longer hold the rows a model was held out on (the message says which and what to do)."""


@dataclass(frozen=True)
class HeldOut:
    """The rows to evaluate a model on and where they come from."""

    rows: pl.DataFrame  # sample rows, ``split`` = the held-out split each belongs to
    windows: dict[str, dict[str, Any]]  # per split: first_date, last_date, rows (of ``rows``)
    verified: str | None  # "fingerprint" / "row counts": how the rows were matched to the card; None: not
    note: str  # one line: which windows these are and how they were checked


def fingerprint(rows: pl.DataFrame) -> str:
    """sha256 (16 hex) of ``rows``' FINGERPRINT_COLUMNS, sorted, as CSV: the same for the same rows
    whatever their order or the integer widths of the labels (a warehouse read or a Parquet file)."""
    frame = rows.select(
        pl.col("site").cast(pl.Utf8),
        pl.col("date").cast(pl.Date),
        pl.col("asin").cast(pl.Utf8),
        pl.col("relevance").cast(pl.Int64),
        pl.col("explodes").cast(pl.Int64),
    ).sort(list(FINGERPRINT_COLUMNS))
    return hashlib.sha256(frame.write_csv(include_header=False).encode()).hexdigest()[:16]


def _span(rows: pl.DataFrame) -> dict[str, Any]:
    return {"first_date": str(rows["date"].min()), "last_date": str(rows["date"].max()), "rows": rows.height}


def held_out_record(samples: pl.DataFrame) -> dict[str, Any]:
    """The card's ``held_out``: per held-out split of ``samples`` (the rank samples a model is trained
    on, all splits) its first and last reference date, rows and fingerprint, and the samples' own first
    and last reference date (``samples_window``, what a rebuild would have to cover)."""
    windows = {}
    for split in HELD_OUT:
        rows = samples.filter(pl.col("split") == split)
        if not rows.is_empty():
            windows[split] = {**_span(rows), "fingerprint": fingerprint(rows)}
    return {
        "windows": windows,
        "samples_window": [str(samples["date"].min()), str(samples["date"].max())],
        "fingerprint_of": list(FINGERPRINT_COLUMNS),
    }


def _day(value: Any) -> date:
    return date.fromisoformat(str(value)[:10])


def recorded_windows(card: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str] | None]:
    """The held-out windows a card records (per split: first_date, last_date, rows and, on cards with
    ``held_out``, fingerprint) and the samples' first and last date; ({}, None) when it records none.
    Older cards: ``data_window`` and ``rows`` (the valid and test spans and rows of the full splits)."""
    held = card.get("held_out")
    if isinstance(held, Mapping) and held.get("windows"):
        return {k: dict(v) for k, v in held["windows"].items()}, held.get("samples_window")
    spans, rows = card.get("data_window") or {}, card.get("rows") or {}
    windows = {
        split: {"first_date": spans[split][0], "last_date": spans[split][1], "rows": rows[split]}
        for split in HELD_OUT
        if spans.get(split) and isinstance(rows.get(split), int)
    }
    if not windows:
        return {}, None
    train = spans.get("train") or [None]
    last = max(w["last_date"] for w in windows.values())
    return windows, [train[0], last] if train[0] else None


def trained_through(card: Mapping[str, Any]) -> date | None:
    """The last reference date the model was fitted on (its card's ``data_window`` train span; a
    refitted model's covers the validation split too)."""
    train = (card.get("data_window") or {}).get("train")
    return _day(train[1]) if train else None


def _shown(windows: Mapping[str, Mapping[str, Any]]) -> str:
    return ", ".join(f"{s} {w['first_date']}..{w['last_date']}" for s, w in windows.items())


def current_windows(samples: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """The valid / test splits ``samples`` hold now: first_date, last_date, rows."""
    out = {}
    for split in HELD_OUT:
        rows = samples.filter(pl.col("split") == split)
        if not rows.is_empty():
            out[split] = _span(rows)
    return out


def held_out_rows(card: Mapping[str, Any], samples: pl.DataFrame, *, version: str) -> HeldOut:
    """The rows of ``samples`` (rank samples, every split) to evaluate model ``version`` on: those of
    the held-out windows its card records, checked against the card's row counts and fingerprints;
    without recorded windows, the current valid / test rows (unverified). ``HeldOutChanged`` when the
    samples no longer hold the recorded rows, or, unverified, when a current valid / test row lies on a
    date the card says the model trained on."""
    windows, samples_window = recorded_windows(card)
    now = current_windows(samples)
    through = trained_through(card)
    if not windows:
        rows = samples.filter(pl.col("split").is_in(HELD_OUT))
        if through is not None and not rows.is_empty() and rows["date"].min() <= through:  # type: ignore[operator]
            raise HeldOutChanged(
                f"model {version}'s card records no held-out windows and train_samples_rank's "
                f"{_shown(now)} include reference dates it trained on (through {through}): those rows "
                "would not measure it; retrain ranker_model on these samples"
            )
        return HeldOut(
            rows,
            now,
            None,
            f"UNVERIFIED: model {version}'s card records no held-out windows; evaluated on "
            f"train_samples_rank's current {_shown(now) or 'valid / test splits (empty)'}, which may not "
            "be the rows it was validated and tested on (retrain ranker_model to record them)",
        )
    parts, problems, by = [], [], "fingerprint"
    for split, window in windows.items():
        rows = samples.filter(
            pl.col("date").is_between(_day(window["first_date"]), _day(window["last_date"]))
        )
        span = f"{split} {window['first_date']}..{window['last_date']}"
        if rows.height != window["rows"]:
            problems.append(f"{span}: {rows.height:,} rows now, {window['rows']:,} on the card")
        elif window.get("fingerprint") is None:
            by = "row counts"
        elif fingerprint(rows) != window["fingerprint"]:
            problems.append(f"{span}: {rows.height:,} rows as on the card, but other keys or labels")
        parts.append(rows.with_columns(split=pl.lit(split)))
    if problems:
        trained = f", trained on reference dates through {through}" if through else ""
        rebuild = (
            f", or rebuild train_samples as the model had them (reference dates {samples_window[0]}.."
            f"{samples_window[1]}, the same label settings)"
            if samples_window
            else ""
        )
        raise HeldOutChanged(
            f"train_samples_rank no longer holds the held-out rows of model {version}{trained} "
            f"({'; '.join(problems)}); its splits are now {_shown(now) or 'empty'}, so figures there would "
            f"not be the model's validation and test quality: retrain ranker_model on these samples{rebuild}"
        )
    # the same rows, labelled otherwise now (a rebuild with other split boundaries): say so
    changed = {s: _span_of(w) for s, w in now.items()} != {s: _span_of(w) for s, w in windows.items()}
    note = f"the model card's held-out windows ({_shown(windows)}), the same rows by {by}" + (
        f"; train_samples_rank's splits have changed since (now {_shown(now) or 'no valid or test rows'})"
        if changed
        else ""
    )
    return HeldOut(pl.concat(parts), {s: _span(p) for s, p in zip(windows, parts, strict=True)}, by, note)


def _span_of(window: Mapping[str, Any]) -> tuple[str, str, int]:
    return str(window["first_date"]), str(window["last_date"]), int(window["rows"])
