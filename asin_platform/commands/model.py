"""Model-layer subcommands: the seed's training/ and inference/ scripts over Parquet files.

    train-rank     --data artifacts/samples/train_samples_rank.parquet --output artifacts/lgb_rank.txt
    tune-rank      --data ... --trials N [--storage postgresql://... | --study-path artifacts/tuning/lgb_rank.db]
    eval-metrics   --predictions predictions.csv --k 10 20
    batch-predict  --model artifacts/lgb_rank.txt --features F.parquet --output exports/pred_rank_daily.parquet
    model list | show VERSION | promote VERSION --reason TEXT   (the warehouse's model registry)

Each calls the same core functions as the Dagster assets (core.ranker, core.tuning, core.metrics,
core.predict); ``build-labels`` (core.labels) is in commands/labels.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import polars as pl

from asin_platform.commands._args import (
    check_day,
    lever_flag_error,
    parse_date,
    parse_params,
    print_frame,
    read_table,
    write_table,
)
from asin_platform.commands._lightgbm import fatal_lines_held_back
from asin_platform.errors import UserError
from asin_platform.levers import LeverError, RankerLevers, TuningRun
from asin_platform.settings import Settings

# ------------------------------------------------------------------------------------- train-rank


def _with_baseline(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    from asin_platform.core.metrics import add_baseline_scores

    return add_baseline_scores(frame, settings.score_weights, min_category_size=settings.min_category_size)


def _models_dir(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.models_dir) if args.models_dir else Path(settings.artifacts_dir) / "models"


def _levers(args: argparse.Namespace, settings: Settings, params: dict | None = None) -> Any:
    """settings.scale.ranker with the flags given (an unset flag keeps the setting) and ``params``
    as the LightGBM params laid over them: what build_ranker trains with, as the asset does.
    The flags are checked by ``RankerLevers.overlaid``, against the bounds of the settings: one out
    of its range is a UserError naming the flag (``--refit-factor -1.0: input should be ...``)."""
    from asin_platform.core.ranker_levers import RankerParams

    flags = {
        "rounds": args.rounds,
        "early_stopping": args.early_stopping,
        "negative_fraction": args.negative_fraction,
        "hard_negative_fraction": args.hard_negative_fraction,
        "min_query_rows": args.min_query_rows,
        "refit_factor": args.refit_factor,
    }
    try:
        levers = RankerLevers.overlaid(settings.scale.ranker, flags)
    except LeverError as exc:
        raise lever_flag_error(exc) from None
    return RankerParams.of(levers.model_dump(), lightgbm=params)


# what LightGBM refuses in train-rank and tune-rank is the user's: say what to fix, in these terms
REFUSED_FIX = "fix what LightGBM refused (--params, the training flags or the samples in --data)"


def _checked_params(args: argparse.Namespace, settings: Settings) -> tuple[Any, dict]:
    """The levers of the flags and the LightGBM params of ``--params``, checked before anything is
    read: a flag out of its range, ``--params`` that is not a JSON object, or params the ranker
    refuses before LightGBM sees them (``core.ranker.merged_params``: a
    ``lambdarank_truncation_level`` below the largest k) is a UserError naming the flag."""
    levers = _levers(args, settings)
    params = parse_params(args.params)
    try:
        _levers(args, settings, params).lightgbm_params()
    except (ValueError, TypeError) as exc:  # e.g. {"lambdarank_truncation_level": [1]}
        raise UserError(f"--params: {exc}") from None
    return levers, params


def _train_and_save(
    samples: pl.DataFrame, params: dict, args: argparse.Namespace, settings: Settings, extra: dict
) -> int:
    from asin_platform.core.held_out import held_out_record
    from asin_platform.core.metrics import markdown_table
    from asin_platform.core.model_files import gate_figure
    from asin_platform.core.predict import add_model_scores
    from asin_platform.core.ranker import LightGBMError, feature_importance, lightgbm_refusal
    from asin_platform.core.ranker_levers import build_ranker, refit_summary

    samples = _with_baseline(samples, settings)
    try:
        with fatal_lines_held_back():  # LightGBM's own stderr line of a refusal: the line below says it
            trained = build_ranker(
                samples, _levers(args, settings, params), compare={"baseline": "explosive_score"}
            )
    except LightGBMError as exc:  # nothing trained or registered: the params, flags or samples
        raise UserError(
            f"LightGBM refused to train the ranker ({lightgbm_refusal(exc)}); {REFUSED_FIX} "
            f"and run {args.command} again"
        ) from exc
    # held_out: the validation and test rows, so model_evaluation scores it on these (core.held_out)
    record = {"samples": str(args.data), "held_out": held_out_record(samples), **extra}
    saved = _register(trained, args, settings, extra=record)
    model_out, card_out = _export(saved, args.output)
    print(
        f"trained {trained.best_iteration} trees in {trained.training_seconds:.1f} s on "
        f"{trained.rows['train']:,} rows ({trained.queries['train']} queries)"
    )
    if trained.refit:
        print(
            f"refitted: {refit_summary(trained.refit)}; the validation figures below are "
            f"{trained.refit['valid_metrics_of']}"
        )
    print("validation (model vs baseline):")
    print(markdown_table(trained.valid_metrics))
    gate, verdict = saved.card["gate"], saved.card["verdict"]
    # passed None: no baseline to compare with, which is not a pass either (promotion_refusal)
    outcome = {True: "passed", False: "FAILED"}.get(gate["passed"], "no baseline to compare with")
    print(
        f"gate {gate['metric']} model {gate_figure(gate['model'])} vs baseline "
        f"{gate_figure(gate['baseline'])}: {outcome}"
    )
    print(f"{verdict['status']}: {verdict['reason']}; promoted: {saved.promoted}")
    print("top features by gain:")
    print_frame(feature_importance(trained.booster).head(10))
    print(
        f"model {saved.version}: {saved.shown_url} (registered in model_registry)\n  copy: {model_out} (card {card_out})"
    )
    if args.predictions:
        scored = add_model_scores(
            samples.filter(pl.col("split").is_in(["valid", "test"])),
            trained.booster,
            trained.features,
            num_iteration=trained.best_iteration,
        )
        out = write_table(
            scored.select(
                "split", "site", "date", "asin", "relevance", "explodes", "model_score", "explosive_score"
            ),
            args.predictions,
        )
        print(f"validation + test predictions -> {out}")
    return 0


def _register(trained: Any, args: argparse.Namespace, settings: Settings, extra: dict) -> Any:
    """Write the model to the models directory (--models-dir, else the settings' artifact store)
    and register it in the warehouse's model_registry, promoted as the weekly retraining would
    (assets.training.judge_candidate: not worse than the promoted model on the latest folds)."""
    from asin_platform.assets.training import judge_candidate
    from asin_platform.commands._runtime import cli_warehouse, warehouse_errors
    from asin_platform.storage import ArtifactStore, artifacts_store, register_model

    if args.models_dir:
        store, prefix = ArtifactStore.at(Path(args.models_dir).resolve()), ""
    else:
        store, prefix = artifacts_store(settings), "models"
    with warehouse_errors():
        warehouse = cli_warehouse(settings)
        verdict = judge_candidate(warehouse, settings, trained)
        return register_model(warehouse, store, trained, extra=extra, verdict=verdict, models=prefix)


def _export(saved: Any, output: str | Path) -> tuple[Path, Path]:
    """A copy of the registered model at ``output`` (the seed's ``artifacts/lgb_rank.txt``), its
    card beside it as ``<stem>.card.json``."""
    from asin_platform.storage import read_bytes

    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(read_bytes(saved.model_url))
    card_out = out.with_name(out.stem + ".card.json")
    card_out.write_bytes(read_bytes(f"{saved.artifact_url}/card.json"))
    return out, card_out


def cmd_train_rank(args: argparse.Namespace, settings: Settings) -> int:
    _, params = _checked_params(args, settings)  # the user's mistakes in them before anything is read
    samples = read_table(args.data, "--data")
    return _train_and_save(samples, params, args, settings, extra={})


# -------------------------------------------------------------------------------------- tune-rank


def _study_storage(args: argparse.Namespace, settings: Settings) -> str:
    """--storage, else --study-path (SQLite), else the shared database the settings name
    (storage.optuna_url, the PostgreSQL warehouse), else SQLite beside the models directory."""
    from asin_platform.commands._runtime import cli_warehouse
    from asin_platform.storage import tuning_db

    if args.storage:
        url = args.storage
    elif args.study_path:
        return str(Path(args.study_path))
    elif settings.storage.optuna_url or cli_warehouse(settings).backend == "postgres":
        url = tuning_db.optuna_storage(settings, cli_warehouse(settings)._plain_url())  # noqa: SLF001
    else:
        return str(_models_dir(args, settings).parent / "tuning" / "lgb_rank.db")
    try:
        tuning_db.prepare(url)
    except Exception as exc:  # noqa: BLE001 - any connection failure is the user's URL or server
        raise UserError(f"cannot open the study database {tuning_db.shown_storage(url)}: {exc}") from None
    return url


def cmd_tune_rank(args: argparse.Namespace, settings: Settings) -> int:
    from asin_platform.core.tuning import FAIL_REASON, NoCompletedTrialError, tune_ranker
    from asin_platform.storage.tuning_db import shown_storage

    # the user's mistakes in flags and --params fail before the data is read or the study opened
    levers, params = _checked_params(args, settings)
    try:
        TuningRun.overlaid(TuningRun(), {"trials": args.trials, "timeout": args.timeout})
    except LeverError as exc:
        raise lever_flag_error(exc) from None
    samples = _with_baseline(read_table(args.data, "--data"), settings)  # hard negatives rank by its score
    study = _study_storage(args, settings)
    try:
        with fatal_lines_held_back():  # each failed trial's line gives LightGBM's refusal instead
            result = tune_ranker(
                samples,
                trials=args.trials,
                study_path=study,
                study_name=args.study_name,
                seed=args.seed,
                base_params=params,
                num_boost_round=args.rounds,
                early_stopping_rounds=args.early_stopping,
                levers=levers,
                timeout=args.timeout,
                on_trial=lambda _study, t: print(
                    f"  trial {t.number}: {t.state.name.lower()}"
                    + (f", valid NDCG@20 {t.value:.4f}" if t.value is not None else "")
                    + (f" ({t.user_attrs[FAIL_REASON]})" if FAIL_REASON in t.user_attrs else "")
                    + f", {json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in t.params.items()})}"
                ),
            )
    except NoCompletedTrialError as exc:
        # every trial failed: LightGBM refused what the user gave (--params, the flags, the samples)
        raise UserError(f"{exc}; {REFUSED_FIX} and run tune-rank again") from exc
    print(
        f"study {result.study_name} ({shown_storage(study)}): {result.completed_trials} completed trials "
        f"({result.ran_now} in this run); best validation NDCG@20 {result.best_value:.4f}"
    )
    tuned = {k: result.best_params[k] for k in sorted(result.best_params) if k in _TUNED}
    print("best params: " + json.dumps(tuned))
    if "://" not in study:  # beside a SQLite study; a shared database's workers print them instead
        best_path = Path(study).with_suffix(".best_params.json")
        best_path.write_text(json.dumps(result.best_params, indent=2, default=str) + "\n")
        print(f"best params -> {best_path}")
    if args.output:
        return _train_and_save(
            samples,
            result.best_params,
            args,
            settings,
            extra={
                "tuning": {
                    "study": shown_storage(study),
                    "study_name": result.study_name,
                    "trials": result.completed_trials,
                    "best_valid_ndcg@20": result.best_value,
                }
            },
        )
    return 0


_TUNED = (
    "learning_rate",
    "num_leaves",
    "min_data_in_leaf",
    "feature_fraction",
    "bagging_fraction",
    "lambda_l2",
)


# ----------------------------------------------------------------------------------- eval-metrics


_LABEL_CANDIDATES = ("relevance", "label", "explodes", "target")
_QUERY_COLUMNS = ("site", "date")


def cmd_eval_metrics(args: argparse.Namespace, settings: Settings) -> int:
    from asin_platform.core.metrics import RANKERS, compare_rankers, markdown_table

    frame = read_table(args.predictions, "--predictions")
    label = args.label or next((c for c in _LABEL_CANDIDATES if c in frame.columns), None)
    if label is None or label not in frame.columns:
        raise UserError(
            f"no label column {args.label or ''}: pass --label (looked for {', '.join(_LABEL_CANDIDATES)})"
        )
    positive = args.positive or ("explodes" if "explodes" in frame.columns and label != "explodes" else None)
    query = args.query or [c for c in _QUERY_COLUMNS if c in frame.columns]
    if not query:
        raise UserError("no query columns: pass --query (e.g. site date)")
    scores = args.scores or [c for c in frame.columns if c.endswith("score") and frame[c].dtype.is_numeric()]
    if not scores:
        raise UserError("no score columns: pass --scores")
    if "split" in frame.columns and args.split:
        frame = frame.filter(pl.col("split") == args.split)
    name_of = {column: name for name, column in RANKERS.items()}  # model_score -> model, ...
    names = {name_of.get(s, s.removesuffix("_score") or s): s for s in scores}
    table = compare_rankers(frame, names, relevance=label, positive=positive, ks=args.k, query=query)
    print(
        f"label {label!r}"
        + (f", positives {positive!r}" if positive else ", positives = label > 0")
        + f", queries {query}"
        + (f", split {args.split}" if args.split and "split" in frame.columns else "")
    )
    print(markdown_table(table))
    if args.output:
        out = write_table(table, args.output) if not args.output.endswith(".md") else Path(args.output)
        if args.output.endswith(".md"):
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(markdown_table(table) + "\n")
        print(f"-> {out}")
    return 0


# ---------------------------------------------------------------------------------- batch-predict


def _load_model(spec: str, settings: Settings) -> Any:
    """A model file or directory, a store URL (s3://.../models/<version>), or the model registry's
    ``promoted`` / ``newest`` model (the warehouse the settings or ASIN_PLATFORM_WAREHOUSE_URL name).
    None there is a UserError; so is a file that is not a model LightGBM can load (a text file, a
    truncated copy: ``core.model_files.ModelFileError``) or cannot be read, naming --model."""
    from asin_platform.core.model_files import ModelFileError, load_model
    from asin_platform.storage.registry import NoModelError, load_registered, load_url

    try:
        with fatal_lines_held_back():  # LightGBM's own stderr line of a refusal: the line below says it
            if spec in ("promoted", "newest"):
                from asin_platform.commands._runtime import cli_warehouse

                return load_registered(cli_warehouse(settings), spec)
            if "://" in spec and not spec.startswith("file://"):
                return load_url(spec)
            return load_model(spec.removeprefix("file://"))
    except (NoModelError, FileNotFoundError) as exc:
        raise UserError(f"no model at {spec}: {exc}") from None
    except ModelFileError as exc:
        raise UserError(f"--model {spec}: {exc}; {_MODEL_ADVICE}") from None
    except OSError as exc:  # a file it may not read, a directory where a file should be
        raise UserError(f"--model {spec}: cannot read it ({exc.strerror or exc}); {_MODEL_ADVICE}") from None


_MODEL_ADVICE = (
    "give a model train-rank or ranker_model saved (its model file, version directory or models "
    "directory), a store URL, or promoted / newest"
)


def _features_to_score(args: argparse.Namespace) -> pl.DataFrame:
    """The rows of --features to score: those of --date when given. No row to score is a UserError
    (predictions of nothing are no prediction): an empty file, or a --date the file holds no row of,
    named with the first and last dates it does hold."""
    features = read_table(args.features, "--features")
    if features.is_empty():
        raise UserError(
            f"--features {args.features} holds no rows: nothing to predict; give a features file "
            "with rows (features-build writes one)"
        )
    if args.date is None:
        return features
    day = features.filter(pl.col("date") == pl.lit(args.date))
    if day.is_empty():
        dates = features["date"]
        raise UserError(
            f"--date {args.date}: --features {args.features} holds no rows of that day (its rows run "
            f"from {dates.min()} to {dates.max()}); give a --date it holds"
        )
    return day


def cmd_batch_predict(args: argparse.Namespace, settings: Settings) -> int:
    from asin_platform.core.predict import predict_with

    check_day("--date", args.date)  # before the model or the features are read
    model = _load_model(args.model, settings)
    features = _features_to_score(args)
    predictions = predict_with(
        model,
        features,
        reasons_per_query=settings.scale.reasons_per_query,
        reasons_rest=settings.scale.reasons_rest,
    )
    out = write_table(predictions, args.output)
    if args.csv and out.suffix.lower() != ".csv":
        write_table(predictions, out.with_suffix(".csv"))
    print(f"{predictions.height:,} predictions (model {model.version}) -> {out}")
    print_frame(
        predictions.filter(pl.col("rank_in_site") <= 5).select(
            "site", "date", "rank_in_site", "asin", "category_id", "model_score"
        )
    )
    return 0


# ------------------------------------------------------------------- model list / show / promote


def _registry_rows(settings: Settings) -> pl.DataFrame:
    from asin_platform.commands._runtime import cli_warehouse, warehouse_errors
    from asin_platform.storage import registry

    with warehouse_errors():
        return registry(cli_warehouse(settings))


def cmd_model_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = _registry_rows(settings)
    if rows.is_empty():
        raise UserError("the model registry holds no model: materialise ranker_model or run train-rank first")
    promoted = rows.filter(pl.col("promoted"))["version"].to_list()
    shown = rows.filter(pl.col("verdict") == "rejected") if args.rejected else rows
    print(f"{'version':<26}  {'created (UTC)':<16}  {'promoted':<8}  {'verdict':<8}  reason")
    for row in shown.head(args.limit).iter_rows(named=True):
        print(
            f"{row['version']:<26}  {row['created_at']:%Y-%m-%d %H:%M}  {'yes' if row['promoted'] else '':<8}  "
            f"{row['verdict'] or '-':<8}  {row['verdict_reason'] or ''}"
        )
    print(f"promoted (what predictions use): {promoted[0] if promoted else 'none'}")
    return 0


def cmd_model_show(args: argparse.Namespace, settings: Settings) -> int:
    from asin_platform.core.backtest import markdown
    from asin_platform.core.model_files import gate_figure

    rows = _registry_rows(settings).filter(pl.col("version") == args.version)
    if rows.is_empty():
        raise UserError(
            f"no model {args.version!r} in the registry: `asin-platform model list` shows the versions"
        )
    row = rows.row(0, named=True)
    print(f"model {row['version']} (created {row['created_at']}): {row['artifact_url']}")
    print(f"promoted: {row['promoted']}; verdict: {row['verdict'] or 'none'}")
    print(f"reason: {row['verdict_reason'] or 'no verdict recorded'}")
    if row["valid_ndcg_20"] is not None:
        print(
            f"validation NDCG@20: model {gate_figure(row['valid_ndcg_20'])} vs baseline "
            f"{gate_figure(row['baseline_valid_ndcg_20'])}"
        )
    if row["backtest_ndcg_20"] is not None:
        print(
            f"latest folds, mean NDCG@20: this model {gate_figure(row['backtest_ndcg_20'])} vs "
            f"{row['compared_version']} {gate_figure(row['compared_backtest_ndcg_20'])}"
        )
    if row["backtest_folds"]:
        print(markdown(pl.DataFrame(json.loads(row["backtest_folds"]))))
    return 0


def cmd_model_promote(args: argparse.Namespace, settings: Settings) -> int:
    from asin_platform.commands._runtime import cli_warehouse, warehouse_errors
    from asin_platform.storage import NoModelError, artifacts_store, promote_model

    with warehouse_errors():
        try:
            promote_model(
                cli_warehouse(settings), args.version, artifacts_store(settings),
                reason=f"promoted by hand (asin-platform model promote): {args.reason}",
            )  # fmt: skip
        except NoModelError as exc:
            raise UserError(str(exc)) from None
    print(f"promoted {args.version}: predictions use it from their next run")
    return 0


def _register_model_group(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="the model registry: models, their promotion verdicts, promote by hand")
    group = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    q = group.add_parser("list", help="registered models, newest first, with the retraining's verdicts")
    q.add_argument("--limit", type=int, default=20, help="rows shown (default 20)")
    q.add_argument("--rejected", action="store_true", help="only models the retraining refused")
    q.set_defaults(func=cmd_model_list)
    q = group.add_parser("show", help="one model's verdict: reason, both figures, both models per fold")
    q.add_argument("version")
    q.set_defaults(func=cmd_model_show)
    q = group.add_parser("promote", help="make a registered model the promoted one (overrides a verdict)")
    q.add_argument("version")
    q.add_argument("--reason", required=True, help="why, kept in the registry as the verdict's reason")
    q.set_defaults(func=cmd_model_promote)


def register(sub: argparse._SubParsersAction) -> None:
    def training_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, help="train_samples_rank Parquet")
        p.add_argument("--models-dir", help="versioned model directory (default: <artifacts_dir>/models)")
        p.add_argument("--params", help="LightGBM params as a JSON object or a JSON file")
        # unset levers are settings.scale.ranker's, as in the ranker_model asset
        p.add_argument("--rounds", type=int, help="max boosting rounds (default: scale.ranker.rounds)")
        p.add_argument(
            "--early-stopping", type=int, help="rounds without validation gain (default: settings)"
        )
        p.add_argument("--predictions", help="also write validation + test predictions here (csv/parquet)")
        p.add_argument(
            "--negative-fraction", type=float,
            help="share of the other grade-0 training rows kept at random (default: settings; 1 = all)",
        )  # fmt: skip
        p.add_argument(
            "--hard-negative-fraction", type=float,
            help="share of each query's grade-0 rows kept as the baseline's top-scored (default: settings)",
        )  # fmt: skip
        p.add_argument(
            "--min-query-rows", type=int,
            help="only queries of more rows than this are sampled (default: settings)",
        )  # fmt: skip
        p.add_argument(
            "--refit-factor", type=float,
            help="> 0: refit on train + valid with round(early-stopped trees x this) trees (default: settings; 0 = off)",
        )  # fmt: skip

    p = sub.add_parser(
        "train-rank", help="train the LightGBM lambdarank model (versioned + copied to --output)"
    )
    training_args(p)
    p.add_argument("--output", default="artifacts/lgb_rank.txt", help="copy of the model (card beside it)")
    p.set_defaults(func=cmd_train_rank)

    p = sub.add_parser("tune-rank", help="Optuna search on validation NDCG@20 (resumable study)")
    training_args(p)
    p.add_argument(
        "--trials", type=int, required=True, help="completed trials the study should hold (1..10,000)"
    )
    p.add_argument(
        "--storage",
        help="database URL of the study, shared by workers (default: storage.optuna_url, else the "
        "PostgreSQL warehouse's <schema>_optuna, else --study-path); credentials from the environment",
    )
    p.add_argument(
        "--study-path", help="SQLite file of the study (default: <artifacts_dir>/tuning/lgb_rank.db)"
    )
    p.add_argument("--study-name", default="lgb_rank")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, help="seconds for this run, > 0 and at most a week (604800)")
    p.add_argument("--output", help="train the best params and save the model here too")
    p.set_defaults(func=cmd_tune_rank, rounds=500, early_stopping=30)

    p = sub.add_parser(
        "eval-metrics", help="NDCG / precision / recall @k per score column of a predictions file"
    )
    p.add_argument(
        "--predictions", required=True, help="csv or parquet with query columns, scores and a label"
    )
    p.add_argument("--k", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--label", help="relevance column (default: relevance | label | explodes)")
    p.add_argument("--positive", help="0/1 column defining positives (default: explodes, else label > 0)")
    p.add_argument("--scores", nargs="+", help="score columns (default: every numeric *score column)")
    p.add_argument("--query", nargs="+", help="query columns (default: site date)")
    p.add_argument("--split", help="only rows of this split (when the file has a split column)")
    p.add_argument("--output", help="also write the table (.md, .csv or .parquet)")
    p.set_defaults(func=cmd_eval_metrics)

    p = sub.add_parser(
        "batch-predict", help="score a features file with a model: score + ranks per site/category"
    )
    p.add_argument(
        "--model",
        required=True,
        help="model file, version directory, models dir (uses latest), a store URL "
        "(s3://.../models/<version>), or `promoted` / `newest` from the warehouse's model registry",
    )
    p.add_argument("--features", required=True, help="features_daily Parquet/CSV")
    p.add_argument("--output", default="exports/pred_rank_daily.parquet")
    p.add_argument("--date", type=parse_date, help="only this date (YYYY-MM-DD)")
    p.add_argument("--csv", action="store_true", help="also write a CSV beside a Parquet output")
    p.set_defaults(func=cmd_batch_predict)

    _register_model_group(sub)
