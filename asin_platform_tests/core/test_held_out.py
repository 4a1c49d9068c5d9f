"""core.held_out: a model's held-out windows recorded on its card and found again in the samples."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from asin_platform.core.held_out import (
    HeldOutChanged,
    fingerprint,
    held_out_record,
    held_out_rows,
    recorded_windows,
)

D0 = date(2025, 1, 1)
# reference dates 1..10 of January: train 1-4, (embargo 5), valid 6-7, (embargo 8), test 9-10
SPLIT_OF = {1: "train", 2: "train", 3: "train", 4: "train", 6: "valid", 7: "valid", 9: "test", 10: "test"}


def samples(split_of: dict[int, str] = SPLIT_OF) -> pl.DataFrame:
    """Rank samples: two ASINs per reference date, B01 a positive on even days."""
    rows = [
        {
            "site": "US",
            "date": D0 + timedelta(days=day - 1),
            "asin": asin,
            "split": split,
            "relevance": 2 if asin == "B01" and day % 2 == 0 else 0,
            "explodes": 1 if asin == "B01" and day % 2 == 0 else 0,
        }
        for day, split in split_of.items()
        for asin in ("B01", "B02")
    ]
    return pl.DataFrame(rows).with_columns(pl.col("relevance", "explodes").cast(pl.Int8))


def card_of(frame: pl.DataFrame) -> dict:
    """A card as ranker_model writes it: data_window / rows (train_ranker) and held_out."""
    return {
        "data_window": {"train": ["2025-01-02", "2025-01-04"], "valid": ["2025-01-06", "2025-01-07"],
                        "test": ["2025-01-09", "2025-01-10"]},
        "rows": {"train_split": 8, "train": 6, "valid": 4, "test": 4},
        "held_out": held_out_record(frame),
    }  # fmt: skip


def test_the_record_holds_each_held_out_window_its_rows_and_fingerprint() -> None:
    frame = samples()
    assert held_out_record(frame) == {
        "windows": {
            "valid": {"first_date": "2025-01-06", "last_date": "2025-01-07", "rows": 4,
                      "fingerprint": fingerprint(frame.filter(pl.col("split") == "valid"))},
            "test": {"first_date": "2025-01-09", "last_date": "2025-01-10", "rows": 4,
                     "fingerprint": fingerprint(frame.filter(pl.col("split") == "test"))},
        },
        "samples_window": ["2025-01-01", "2025-01-10"],
        "fingerprint_of": ["site", "date", "asin", "relevance", "explodes"],
    }  # fmt: skip


def test_a_fingerprint_ignores_row_order_and_label_widths_but_not_a_label() -> None:
    valid = samples().filter(pl.col("split") == "valid")
    value = fingerprint(valid)
    assert len(value) == 16
    assert fingerprint(valid.reverse()) == value
    assert fingerprint(valid.with_columns(pl.col("relevance", "explodes").cast(pl.Int64))) == value
    assert fingerprint(valid.drop("split")) == value  # keys and labels only
    relabelled = valid.with_columns(relevance=pl.when(pl.col("asin") == "B02").then(1).otherwise("relevance"))
    assert fingerprint(relabelled) != value


def test_unchanged_samples_give_the_valid_and_test_rows_matched_by_fingerprint() -> None:
    frame = samples()
    held = held_out_rows(card_of(frame), frame, version="v1")
    expected = frame.filter(pl.col("split").is_in(["valid", "test"]))
    assert held.rows.sort("date", "asin").equals(expected.sort("date", "asin"))
    assert held.verified == "fingerprint"
    assert held.windows == {
        "valid": {"first_date": "2025-01-06", "last_date": "2025-01-07", "rows": 4},
        "test": {"first_date": "2025-01-09", "last_date": "2025-01-10", "rows": 4},
    }
    assert held.note == (
        "the model card's held-out windows (valid 2025-01-06..2025-01-07, test 2025-01-09..2025-01-10), "
        "the same rows by fingerprint"
    )


def test_rows_now_labelled_otherwise_are_evaluated_as_the_split_they_were_held_out_as() -> None:
    """Samples rebuilt over the same rows with other split boundaries (e.g. other split fractions):
    the card's windows are still there, so they are what is evaluated, under the card's split names."""
    frame = samples()
    card = card_of(frame)
    moved = samples({**SPLIT_OF, 6: "train", 7: "train", 9: "valid", 10: "test"})
    held = held_out_rows(card, moved, version="v1")
    assert held.rows.group_by("split").agg(pl.col("date").unique().sort()).sort("split").to_dicts() == [
        {"split": "test", "date": [date(2025, 1, 9), date(2025, 1, 10)]},
        {"split": "valid", "date": [date(2025, 1, 6), date(2025, 1, 7)]},
    ]
    assert held.verified == "fingerprint"
    assert held.note == (
        "the model card's held-out windows (valid 2025-01-06..2025-01-07, test 2025-01-09..2025-01-10), "
        "the same rows by fingerprint; train_samples_rank's splits have changed since "
        "(now valid 2025-01-09..2025-01-09, test 2025-01-10..2025-01-10)"
    )
    # the test window labelled train now, the valid one unchanged: still a change to report
    untested = samples({**SPLIT_OF, 9: "train", 10: "train"})
    held = held_out_rows(card, untested, version="v1")
    assert held.rows.sort("date", "asin").equals(
        frame.filter(pl.col("split").is_in(["valid", "test"])).sort("date", "asin")
    )
    assert held.note.endswith(
        "; train_samples_rank's splits have changed since (now valid 2025-01-06..2025-01-07)"
    )


def test_samples_rebuilt_without_the_held_out_rows_are_refused_in_one_line() -> None:
    """Shifted windows (here: one day later): a held-out date is gone, another split now sits on
    dates the model trained on."""
    card = card_of(samples())
    shifted = samples({d + 1: s for d, s in SPLIT_OF.items()})
    with pytest.raises(HeldOutChanged) as caught:
        held_out_rows(card, shifted, version="v1")
    assert str(caught.value) == (
        "train_samples_rank no longer holds the held-out rows of model v1, trained on reference dates "
        "through 2025-01-04 (valid 2025-01-06..2025-01-07: 2 rows now, 4 on the card; test "
        "2025-01-09..2025-01-10: 2 rows now, 4 on the card); its splits are now valid 2025-01-07..2025-01-08, "
        "test 2025-01-10..2025-01-11, so figures there would not be the model's validation and test "
        "quality: retrain ranker_model on these samples, or rebuild train_samples as the model had them "
        "(reference dates 2025-01-01..2025-01-10, the same label settings)"
    )
    assert "\n" not in str(caught.value)


def test_the_same_number_of_rows_with_other_labels_is_refused() -> None:
    frame = samples()
    card = card_of(frame)
    relabelled = frame.with_columns(
        explodes=pl.when(pl.col("date") == date(2025, 1, 9)).then(1).otherwise("explodes")
    )
    with pytest.raises(HeldOutChanged, match=r"^train_samples_rank no longer holds") as caught:
        held_out_rows(card, relabelled, version="v1")
    message = str(caught.value)
    assert "(test 2025-01-09..2025-01-10: 4 rows as on the card, but other keys or labels); " in message


def test_an_older_card_is_matched_by_its_data_window_and_row_counts() -> None:
    """Cards written before ``held_out``: data_window (the full valid / test spans) and rows."""
    frame = samples()
    older = {k: v for k, v in card_of(frame).items() if k != "held_out"}
    assert recorded_windows(older) == (
        {
            "valid": {"first_date": "2025-01-06", "last_date": "2025-01-07", "rows": 4},
            "test": {"first_date": "2025-01-09", "last_date": "2025-01-10", "rows": 4},
        },
        ["2025-01-02", "2025-01-10"],
    )
    held = held_out_rows(older, frame, version="v0")
    assert held.verified == "row counts" and held.rows.height == 8
    assert held.note.endswith("the same rows by row counts")
    with pytest.raises(HeldOutChanged) as caught:
        held_out_rows(older, samples({d + 1: s for d, s in SPLIT_OF.items()}), version="v0")
    assert str(caught.value).endswith(
        "or rebuild train_samples as the model had them (reference dates 2025-01-02..2025-01-10, the same "
        "label settings)"
    )


def test_a_card_without_windows_is_evaluated_on_the_current_splits_unverified() -> None:
    frame = samples()
    held = held_out_rows({}, frame, version="v0")
    assert held.verified is None
    assert held.rows.equals(frame.filter(pl.col("split").is_in(["valid", "test"])))
    assert held.note == (
        "UNVERIFIED: model v0's card records no held-out windows; evaluated on train_samples_rank's "
        "current valid 2025-01-06..2025-01-07, test 2025-01-09..2025-01-10, which may not be the rows it "
        "was validated and tested on (retrain ranker_model to record them)"
    )


def test_a_card_with_only_its_training_dates_refuses_splits_on_those_dates() -> None:
    card = {"data_window": {"train": ["2025-01-02", "2025-01-05"]}}
    assert held_out_rows(card, samples(), version="v0").verified is None  # valid from the 6th: after it
    early = samples({**SPLIT_OF, 5: "valid"})
    with pytest.raises(HeldOutChanged) as caught:
        held_out_rows(card, early, version="v0")
    assert str(caught.value) == (
        "model v0's card records no held-out windows and train_samples_rank's valid 2025-01-05..2025-01-07, "
        "test 2025-01-09..2025-01-10 include reference dates it trained on (through 2025-01-05): those rows "
        "would not measure it; retrain ranker_model on these samples"
    )
