"""Evaluation layer: the newest model beside the baseline, a random ranking and the simulator's oracle
on the model's own held-out windows (``model_evaluation``).

Thin Dagster shell over core.held_out and core.metrics (the CLI's eval-metrics calls the same
functions); ``simulator_oracle`` also serves the walk-forward backtest (assets/outcomes.py). Split
from assets/training.py, which builds this asset with the training ones (group ``model``).
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from asin_platform.assets._metadata import metadata_table
from asin_platform.core.held_out import HeldOutChanged, held_out_rows
from asin_platform.core.labels import SPLITS
from asin_platform.core.metrics import (
    DEFAULT_KS,
    MODEL_EVALUATION,
    RANKERS,
    add_baseline_scores,
    add_random_scores,
    compare_rankers,
    oracle_scores,
    ratios,
)
from asin_platform.core.predict import add_model_scores
from asin_platform.core.ranker import REFIT_VALID_NOTE
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings
from asin_platform.storage import NoModelError, load_registered

# ------------------------------------------------------------------------------- model_evaluation


class ModelEvaluationConfig(dg.Config):
    oracle: bool = True  # rank by the simulator's hidden state too (only when it knows the ASINs)


def oracle_market(settings: Settings, sites: list[str]) -> Any:
    """The simulated market the settings describe (the embedded default upstream)."""
    from asin_platform.simulator import market_from_settings

    return market_from_settings(settings.simulator, sites)


def simulator_oracle(samples: pl.DataFrame, settings: Settings, horizon: int) -> pl.DataFrame | None:
    """The oracle's scores from the bundled simulator's ground truth, or None when the samples do
    not come from it (real data: most ASINs unknown to the simulator)."""
    sites = sorted(set(samples["site"].to_list()) & set(settings.sites))
    if not sites:
        return None
    market = oracle_market(settings, sites)
    # the latent state over the label's windows (T - W, T + H]
    start = samples["date"].min() - timedelta(days=settings.windows.observation)  # type: ignore[operator]
    end = samples["date"].max() + timedelta(days=horizon)  # type: ignore[operator]
    truth = pl.concat([market.ground_truth(site, start, end) for site in sites])  # type: ignore[arg-type]
    scores = oracle_scores(
        samples.select("site", "date", "asin"),
        truth,
        horizon=horizon,
        observation=settings.windows.observation,
    )
    known = scores.join(truth.select("site", "date", "asin"), on=["site", "date", "asin"], how="semi").height
    return scores if known >= 0.9 * samples.height else None


def _early_stopped_valid(table: pl.DataFrame, card: dict[str, Any]) -> pl.DataFrame:
    """``table`` (compare_rankers on the validation split) with the model's rows replaced by its card's
    validation metrics: a refitted model (core.ranker_levers.refit_on_validation) trained on the validation
    rows, so its own figures there would be in-sample; the card's are its early-stopped fit's."""
    card_model = (card.get("metrics") or {}).get("valid", {}).get("model") or {}
    model_rows = table.filter(pl.col("ranker") == "model")
    ks = model_rows["k"].to_list()
    figures = pl.DataFrame(
        {
            "k": ks,
            **{m: [card_model.get(f"{m}@{k}") for k in ks] for m in ("ndcg", "precision", "recall")},
        },
        schema={"k": table.schema["k"], "ndcg": pl.Float64, "precision": pl.Float64, "recall": pl.Float64},
    )
    model_rows = model_rows.drop("ndcg", "precision", "recall").join(figures, on="k", how="left")
    return pl.concat([model_rows.select(table.columns), table.filter(pl.col("ranker") != "model")])


class NothingToEvaluate(ValueError):
    """Neither held-out split holds a positive: NDCG / precision / recall would be undefined."""


def evaluate_model(
    samples: pl.DataFrame, model: Any, settings: Settings, *, oracle: pl.DataFrame | None
) -> pl.DataFrame:
    """compare_rankers per split (valid, test) with the model, baseline, random and the oracle; a
    refitted model's validation rows are its early-stopped fit's (``_early_stopped_valid``).
    ``NothingToEvaluate`` when neither split holds a row or a positive."""
    scored = add_model_scores(samples, model.booster, model.features)
    scored = add_baseline_scores(scored, settings.score_weights, min_category_size=settings.min_category_size)
    scored = add_random_scores(scored)
    if oracle is not None:
        scored = scored.join(
            oracle.select("site", "date", "asin", "oracle_score"), on=["site", "date", "asin"]
        )
    parts = []
    for split in ("valid", "test"):
        rows = scored.filter(pl.col("split") == split)
        if rows.is_empty() or rows["explodes"].sum() == 0:
            continue
        table = compare_rankers(rows, RANKERS, relevance="relevance", positive="explodes", ks=DEFAULT_KS)
        if split == "valid" and (model.card or {}).get("refit"):
            table = _early_stopped_valid(table, model.card)
        parts.append(
            table.with_columns(
                split=pl.lit(split),
                first_date=pl.lit(rows["date"].min()),
                last_date=pl.lit(rows["date"].max()),
            )
        )
    if not parts:
        counts = ", ".join(
            f"{split} {scored.filter(pl.col('split') == split).height:,} rows" for split in ("valid", "test")
        )
        raise NothingToEvaluate(
            f"neither held-out split holds a positive (explodes) row ({counts}): nothing to score the "
            "rankers on; rebuild train_samples over more reference dates (config days) or check the "
            "label settings, then retrain ranker_model"
        )
    return pl.concat(parts)


def model_evaluation(
    context: dg.AssetExecutionContext,
    config: ModelEvaluationConfig,
    warehouse: Warehouse,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """NDCG / precision / recall @10/20/50 of the newest model beside the baseline Explosive
    Score, a random ranking and the simulator oracle, on the model's own validation and test
    windows, over the queries (site x date) with at least one positive. Upserted into
    model_evaluation.

    The windows are the ones its card records (``core.held_out``: first and last reference date, rows
    and fingerprint of each held-out split), taken from ``train_samples_rank`` whatever split those
    rows are labelled now. When the samples were rebuilt and no longer hold those rows (other dates,
    rows or labels), it fails in one line rather than show figures of other rows as the model's
    validation and test quality: retrain ``ranker_model`` or rebuild the samples as the model had them.
    A card recording no windows is evaluated on the current valid / test splits, marked unverified
    (``held_out_verified`` false), unless those lie on dates the card says the model trained on."""
    try:
        model = load_registered(warehouse, "newest")
    except NoModelError as exc:
        raise dg.Failure(str(exc)) from exc
    try:
        held = held_out_rows(model.card, warehouse.read("train_samples_rank"), version=model.version)
    except HeldOutChanged as exc:
        raise dg.Failure(str(exc)) from None
    if held.verified is None:
        context.log.warning(held.note)
    samples = held.rows
    oracle = simulator_oracle(samples, settings, settings.windows.horizon) if config.oracle else None
    try:
        table = evaluate_model(samples, model, settings, oracle=oracle)
    except NothingToEvaluate as exc:
        raise dg.Failure(f"model_evaluation of {model.version}: {exc}") from None
    stored = MODEL_EVALUATION.conform(
        table.with_columns(model_version=pl.lit(model.version), evaluated_at=pl.lit(datetime.now(UTC)))
    )
    warehouse.upsert("model_evaluation", stored)
    metadata: dict[str, Any] = {
        "model_version": model.version,
        "oracle": oracle is not None,
        # which rows the figures describe: the card's held-out windows, or (unverified) today's splits
        "held_out_windows": dg.MetadataValue.json(held.windows),
        "held_out_check": held.note,
        "held_out_verified": held.verified is not None,
    }
    if model.card.get("refit"):
        metadata["valid_model_of"] = REFIT_VALID_NOTE  # the test split is the refitted model's own
    for split in SPLITS[1:]:
        part = table.filter(pl.col("split") == split)
        if part.is_empty():
            continue
        r = ratios(part, "model", k=20)
        # the table holds the split's first and last date: each split is one typed table
        metadata[f"evaluation_{split}"] = metadata_table(part)
        metadata[f"{split}_ndcg@20"] = float(
            part.filter((pl.col("ranker") == "model") & (pl.col("k") == 20))["ndcg"][0]
        )
        metadata[f"{split}_model_vs_baseline_ndcg@20"] = r.get("baseline")
        if "oracle" in r:
            metadata[f"{split}_model_vs_oracle_ndcg@20"] = r["oracle"]
    context.log.info(
        f"evaluated {model.version}: " + ", ".join(f"{k}={v}" for k, v in metadata.items() if "@20" in k)
    )
    return dg.MaterializeResult(metadata=metadata)
