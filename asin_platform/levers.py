"""Settings a run may override one by one, and the one check of such an override.

The ranker's LightGBM levers (``scale.ranker`` in the settings) and a run's own bounded parameters
(the training samples' window, the walk-forward backtest's, an Optuna study's trials and time)
arrive as CLI flags and run config values as well as from the settings file; ``overlaid`` checks
every override against the fields' own bounds, so each bound is declared once, here, and a value
out of range is one ``LeverError`` line wherever it came from. The LightGBM params laid over the
levers as JSON text (``--params``, a run config's ``params_json``) are read by ``json_object``,
with the same one-line error. ``StrictModel`` is also the base of every model in settings.py, and
``Overridable`` of the settings a command overrides by flag (the label windows and thresholds,
``build-labels``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError


class LeverError(ValueError):
    """An override (a CLI flag, a run config value) outside its range: a ranker lever's setting, or a
    run's own parameter bounded the same way (the samples' or the backtest's window, a study's
    trials); or LightGBM params given as text that is not a JSON object (``json_object``).

    ``str()`` is one line naming the setting, the value given and the bound, independent of where
    the value came from: ``refit_factor -1.0: input should be greater than or equal to 0``. The
    parts are kept (``name``, ``value``, ``reason``) so a caller can say where it came from instead,
    e.g. ``--refit-factor -1.0: ...``."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name, self.value, self.reason = name, value, reason
        super().__init__(f"{name} {value}: {reason}")

    def __reduce__(self) -> tuple[type[LeverError], tuple[str, object, str]]:
        # the default would re-create it from ``args`` (the one message): keep the three parts
        return type(self), (self.name, self.value, self.reason)


class StrictModel(BaseModel):
    """A settings model: an unknown key is an error (a typo in settings.yaml must not be silently
    ignored), and values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Overridable(StrictModel):
    """A model whose fields a run may override one by one (a CLI flag, a run config value):
    ``overlaid`` is the one check of such an override, against the fields' own bounds. The ranker
    levers and a run's own parameters below; the label windows and thresholds of settings.py
    (``build-labels`` overrides them by flag)."""

    # what one field is called in the message for a name that is not one ("ranker lever")
    _kind: ClassVar[str] = "setting"

    @classmethod
    def overlaid(cls, base: Self, given: Mapping[str, object]) -> Self:
        """``base`` with the non-None values of ``given`` laid over it (None = not given: an unset
        CLI flag or config field keeps ``base``'s value), validated against the fields' Field bounds
        (for the ranker levers those of ``ASIN_PLATFORM__SCALE__RANKER__*``). The one check of
        every override: the ``train-rank`` / ``tune-rank`` flags, the ``ranker_model`` run config,
        the backtest's flags and config (levers and window), ``tune-rank --trials``.

        Raises ``LeverError`` for the first value out of range, or a name that is not a field."""
        overrides = {name: value for name, value in given.items() if value is not None}
        unknown = [name for name in overrides if name not in cls.model_fields]
        if unknown:
            raise LeverError(
                unknown[0],
                overrides[unknown[0]],
                f"not a {cls._kind} ({cls._kind.rsplit(' ', 1)[-1]}s: {', '.join(cls.model_fields)})",
            )
        try:
            return cls.model_validate({**base.model_dump(), **overrides})
        except ValidationError as exc:
            error = exc.errors()[0]
            name, *item = [str(part) for part in error["loc"]] or [""]
            value = overrides.get(name, error.get("input"))
            # pydantic's "Input should be ...", as the rest of the line: lower case
            reason = error["msg"][:1].lower() + error["msg"][1:]
            if item:  # one item of a tuple (split_fractions): the value is the whole, so say which
                reason += f" (item {int(item[0]) + 1})" if item[0].isdigit() else f" ({'.'.join(item)})"
            # text quoted, so an empty or blank value still shows
            raise LeverError(name, repr(value) if isinstance(value, str) else value, reason) from None


class RankerLevers(Overridable):
    """LightGBM levers of the ranker (core.ranker_levers.RankerParams takes these fields one to one).

    Chosen on benchmarks/model_quality.py and model_speed.py (docs/benchmarks.md, *Training at
    scale*): the defaults keep test NDCG@20 within 1% of the previous full-resolution fit."""

    _kind: ClassVar[str] = "ranker lever"

    learning_rate: float = Field(0.1, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(200, ge=1)
    max_bin: int = Field(63, ge=4, description="histogram bins per feature (fewer = faster)")
    feature_fraction: float = Field(0.8, gt=0, le=1, description="features drawn per tree")
    bagging_fraction: float = Field(0.7, gt=0, le=1, description="rows drawn per tree")
    negative_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="share of the other grade-0 training rows kept at random (every relevant row stays)",
    )
    hard_negative_fraction: float = Field(
        0.2, ge=0, le=1, description="share of each query's grade-0 rows kept as the baseline's top-scored"
    )
    min_query_rows: int = Field(
        1000,
        ge=0,
        description="negative sampling applies only to training queries (site x date) of more rows than "
        "this: smaller ones (demo-sized sites) keep every row",
    )
    rounds: int = Field(1000, ge=1, description="max boosting rounds")
    early_stopping: int = Field(30, ge=1, description="rounds without a validation NDCG@20 gain")
    col_wise: bool = Field(True, description="LightGBM force_col_wise (else force_row_wise)")
    refit_factor: float = Field(
        1.35,
        ge=0,
        le=10,
        description="> 0: refit on train + valid with round(early-stopped trees x this) trees and no "
        "validation split (the gate and the card keep the early-stopped fit's validation metrics); 0 = "
        "off. 1.35 = (train + valid reference dates) / train dates: test NDCG@20 dense 0.653 -> 0.665, "
        "sparse 0.508 -> 0.546 (docs/model_quality.md, *The refit lever*)",
    )


# a run's own parameters, not settings: bounded here all the same, and checked by ``overlaid``


def _iso_date(value: object) -> object:
    """Text as ``date.fromisoformat`` reads it (as the CLI's ``--start`` / ``--end``), not pydantic's
    lax reading, which takes ``20250107`` for seconds since 1970."""
    if not isinstance(value, str):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("iso_date", "input should be a date as YYYY-MM-DD") from None


# a day given as text (a run config's field): YYYY-MM-DD, a date object as it is, nothing else
IsoDate = Annotated[date, BeforeValidator(_iso_date), Field(strict=True)]

# the days a command's date flags (--start, --end) may name. A run reaches back from its days by its
# windows (a backtest by train_days + horizon + 2 x observation: at most about 12 years) and forward
# by the horizon; Python's dates end at years 1 and 9999, so 0001-01-05 or 9999-12-31 overflowed that
# arithmetic. No market data predates 1970, and no run plans beyond 2999.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2999, 12, 31)

# keep every n-th reference date: the training samples' stride and the backtest's, bounded once. A
# stride of more than a year keeps at most one reference date a year, which is never a training set.
SampleEvery = Annotated[int, Field(ge=1, le=365, description="keep every n-th reference date (1..365)")]
# reference dates a training set spans: the samples' window and each backtest fold's, bounded once
# (ten years; more overflows no date arithmetic, but it is never a training window either)
ReferenceDays = Annotated[int, Field(ge=1, le=3650, description="reference dates (1..3,650: ten years)")]
# walk-forward folds, each a window of reference dates scored by a fixed or freshly trained model:
# the backtest's (each fold trains a model) and the promotion's (settings.PromotionSettings), bounded
# once. More than 100 folds or a year between cut-offs is never a backtest; promotion folds of 10**6
# reached back past Python's first date (core.backtest.latest_folds: folds x every_days days).
Folds = Annotated[int, Field(ge=1, le=100, description="walk-forward folds (1..100)")]
FoldDays = Annotated[int, Field(ge=1, le=365, description="days between cut-offs (1..365: a year)")]
# one split's share of the reference dates (train, valid or test): a fraction, never empty
SplitShare = Annotated[
    float, Field(gt=0, le=1, allow_inf_nan=False, description="share of the dates, (0, 1]")
]


class SamplesWindow(Overridable):
    """The reference dates of the training samples and their split: the ``train_samples`` config
    (``end_date``, ``days``, ``sample_every``), ``build-labels --sample-every`` and
    ``--split-fractions``, and ``core.labels.LabelConfig`` (shares and stride). Not read from the
    settings file (each run says its own), but declared and bounded here, so a value out of range (or
    an ``end_date`` that is not a date) is a ``LeverError`` of ``overlaid`` before any data is read;
    the defaults are the config's and the flags'."""

    _kind: ClassVar[str] = "samples setting"

    end_date: IsoDate | None = Field(
        None, description="last mart day whose data labels may use, YYYY-MM-DD (unset: the newest)"
    )

    days: ReferenceDays = Field(
        240, description="reference dates in the window (train + valid + test + two embargo gaps), 1..3,650"
    )
    sample_every: SampleEvery = 1
    split_fractions: tuple[SplitShare, SplitShare, SplitShare] = Field(
        (0.6, 0.2, 0.2),
        description="shares of the reference dates left after the two embargo gaps that go to train, "
        "valid and test, in date order (each of their sum)",
    )


class BacktestWindow(Overridable):
    """The shape of a walk-forward backtest: the ``walk_forward_backtest`` config and the
    ``asin-platform backtest`` flags. Not read from the settings file (each run says its own), but
    declared and bounded here, so a value out of range (0, a negative, more than 100 folds, more than
    a year between cut-offs or as a stride, more than ten years of training dates) is a ``LeverError``
    of ``overlaid`` before any data is read; the defaults are the config's and the flags'."""

    _kind: ClassVar[str] = "backtest setting"

    folds: Folds = Field(
        6,
        description="cut-offs, every_days apart, ending where the newest labels are realised; each "
        "trains a model, so at most 100",
    )
    every_days: FoldDays = Field(28, description="days between cut-offs, at most a year")
    train_days: ReferenceDays = Field(
        240, description="reference dates behind each cut-off used for training, 1..3,650 as the samples'"
    )
    sample_every: SampleEvery = 1  # of the training reference dates, as the samples' (1..365)


class TuningRun(Overridable):
    """An Optuna search's size and time (``tune-rank --trials`` / ``--timeout``, the ``ranker_model``
    config's ``trials`` / ``timeout``): bounded here as the settings are and checked by ``overlaid`` before the
    samples are read or the study is opened."""

    _kind: ClassVar[str] = "tuning setting"

    trials: int = Field(
        20,
        ge=1,
        le=10_000,
        description="completed trials the study should hold (each a LightGBM fit: 10,000 is days of work)",
    )
    timeout: float | None = Field(
        None,
        gt=0,
        le=7 * 24 * 3600,
        allow_inf_nan=False,
        description="seconds this run may search, at most a week (unset: until the study holds its trials)",
    )


# LightGBM params given as text: the CLI's --params, the ranker_model / walk_forward_backtest configs

PARAMS_EXAMPLE = '{"num_leaves": 31}'


def json_object(name: str, text: str | None) -> dict[str, Any]:
    """``text`` (the value of ``name``) as a JSON object; empty or unset text is ``{}``.

    Anything else is a ``LeverError`` of one line, whatever the text holds (newlines included):
    ``params_json '{bad': not JSON (Expecting property name enclosed in double quotes: line 1
    column 2 (char 1)); give a JSON object, e.g. {"num_leaves": 31}``, or ``... '[1, 2]': a JSON
    array, not an object; give ...``. Its ``value`` is the text as a short Python literal (at most
    40 characters of it), so a caller may name the text another way (the CLI names a file by its
    path) and keep ``reason``."""
    if not text:
        return {}
    shown = repr(text if len(text) <= 40 else text[:37] + "...")
    advice = f"give a JSON object, e.g. {PARAMS_EXAMPLE}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LeverError(name, shown, f"not JSON ({exc}); {advice}") from None
    if not isinstance(value, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
        raise LeverError(name, shown, f"a JSON {kind}, not an object; {advice}")
    return value
