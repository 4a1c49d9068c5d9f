"""Typed platform settings: defaults < YAML file < environment variables.

The YAML file follows the seed's ``config/settings.yaml`` shape (sites, rate_limits per source,
retry_policy, windows, ...). It is read from ``$ASIN_PLATFORM_SETTINGS`` or, when that is unset,
``config/settings.yaml`` in the working directory if it exists.

Environment overrides use ``ASIN_PLATFORM__`` plus the key path joined by ``__``, e.g.
``ASIN_PLATFORM__RETRY_POLICY__MAX_ATTEMPTS=3`` or ``ASIN_PLATFORM__SITES=US,DE``. Values are parsed
as YAML scalars/lists, so ``0.9`` is a float and ``[US, DE]`` a list.

Secrets never live here: API tokens and database passwords are read from the environment by the
resources (see ``config/secrets.example.env``).
"""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from asin_platform.levers import FIRST_DAY, LAST_DAY, FoldDays, Folds, Overridable, RankerLevers, StrictModel

ENV_PREFIX = "ASIN_PLATFORM__"
SETTINGS_FILE_ENV = "ASIN_PLATFORM_SETTINGS"
DEFAULT_SETTINGS_FILE = Path("config/settings.yaml")

# Sites the platform knows; Keepa maps UK to its GB domain.
KNOWN_SITES = ("US", "UK", "DE", "FR", "JP", "CA", "IT", "ES", "IN", "MX", "BR")


class SettingsError(ValueError):
    """A settings value is invalid; the message names the key."""


class RateLimit(StrictModel):
    """Quota of one upstream source, per API token."""

    qpm: int = Field(600, gt=0, description="requests per minute")
    burst: int = Field(10, gt=0, description="requests allowed back to back")
    timeout: float = Field(10.0, gt=0, description="seconds per request")


class RetryPolicy(StrictModel):
    max_attempts: int = Field(5, ge=1)
    base_delay: float = Field(0.5, ge=0, description="seconds; doubles each attempt")
    jitter: float = Field(0.25, ge=0, le=1, description="fraction of the delay added at random")
    max_delay: float = Field(30.0, gt=0)
    # The run's circuit breaker for an upstream that cannot be reached at all (nothing listening, a
    # wrong host, a black-holed address): docs/upstream_api.md, "Unreachable upstream".
    unreachable_after: int = Field(
        3,
        ge=1,
        le=100,
        description="requests in a row failed for good without reaching the upstream (refused, DNS, "
        "connect timeout) after which a fetch sends no more and fails its run",
    )


# --- Dagster retry of the assets that call the upstream API (H-shell) ----------------------------
class AssetRetry(StrictModel):
    """Dagster ``RetryPolicy`` of the assets that call the upstream API: a run whose fetch failed for
    good (the upstream was down longer than the per-request retries wait) is re-run after a pause, so
    a transient outage heals without a person. Requests already stored are fetched again: a partition
    is replaced whole, never half-kept."""

    max_retries: int = Field(2, ge=0, description="re-runs of a failed step (0: none)")
    delay: float = Field(60.0, ge=0, description="seconds before the first re-run")
    backoff: Literal["exponential", "linear"] = Field(
        "exponential", description="how the delay grows with each further re-run"
    )
    jitter: Literal["plus_minus", "full", "none"] = Field(
        "plus_minus", description="random spread of the delay, so retried runs do not hit the API together"
    )


class Windows(Overridable):
    """The feature and label windows. The label windows' bounds are declared here once: the settings
    file, ``build-labels --observation / --horizon / --embargo`` (``overlaid``) and
    ``core.labels.LabelConfig`` are all checked against them."""

    lookback: int = Field(30, ge=7, description="days of history behind each feature row")
    horizon: int = Field(30, ge=1, le=365, description="label horizon H in days, at most a year")
    observation: int = Field(28, ge=1, le=365, description="observation window W in days, at most a year")
    embargo: int = Field(
        30, ge=0, le=365, description="days between train/valid/test; >= horizon, at most a year"
    )

    @field_validator("embargo")
    @classmethod
    def _embargo_covers_horizon(cls, embargo: int, info: ValidationInfo) -> int:
        horizon = info.data.get("horizon")  # absent when the horizon itself is out of range
        if horizon is not None and embargo < horizon:
            raise PydanticCustomError(
                "embargo_below_horizon",
                "input should be at least the horizon ({horizon} days), so no training label reaches a "
                "later split",
                {"horizon": horizon},
            )
        return embargo


class Thresholds(Overridable):
    coverage_min: float = Field(0.95, gt=0, le=1, description="mart rows / tracked ASINs")
    quarantine_rate_max: float = Field(0.02, ge=0, le=1)
    price_spike_ratio: float = Field(3.0, gt=1, description="price vs previous day, either way")
    feature_null_rate_max: float = Field(0.5, ge=0, le=1)
    rank_churn_warn: float = Field(0.7, ge=0, le=1, description="share of top-50 that changed")
    freshness_hours: float = Field(36.0, gt=0)
    # the labels' thresholds, also build-labels --sales-ratio / --pctl-gain and core.labels.LabelConfig's
    label_sales_ratio: float = Field(
        1.6, gt=1, le=100, allow_inf_nan=False, description="r: future/past est. sales, at most 100x"
    )
    label_bsr_pctl_gain: float = Field(
        0.2, ge=0, le=1, allow_inf_nan=False, description="p: BSR percentile gain"
    )
    alert_score_min: float = Field(2.0, description="tracking alert: new top candidate above this")


class UpstreamSettings(StrictModel):
    """Where raw data comes from."""

    base_url: str = Field("http://127.0.0.1:8765", description="unified API base URL")
    keepa_base_url: str = Field("https://api.keepa.com")
    source_by_site: dict[str, Literal["unified", "keepa"]] = Field(default_factory=dict)
    batch_size: int = Field(100, ge=1, le=100)
    page_size: int = Field(1000, ge=1, le=5000)
    concurrency: int = Field(4, ge=1, le=64)
    keepa_token_budget: int = Field(10_000, ge=1, description="max Keepa tokens per run")

    def source_for(self, site: str) -> str:
        return self.source_by_site.get(site, "unified")


class SimulatorSettings(StrictModel):
    """The bundled synthetic market (embedded default and tests)."""

    seed: int = 7
    asins_per_site: int = Field(2000, ge=10)
    epoch: date = date(2025, 1, 1)
    qpm: int = Field(6000, gt=0)
    burst: int = Field(50, gt=0)


class ScoreWeights(StrictModel):
    """Explosive Score weights. Signs live in the feature definitions (docs/features.md):
    every component is oriented so that larger = more explosive, except price volatility,
    which enters with its own weight subtracted once."""

    bsr_trend: float = 0.30
    est_sales: float = 0.20
    review_velocity: float = 0.25
    listing_quality: float = 0.10
    keyword_gain: float = 0.05
    price_volatility: float = 0.10


# ---- H-scale (issue 13): chunking and training levers (the levers themselves: levers.py) -----


class ScaleSettings(StrictModel):
    """Bounded memory for large sites and long ranges (docs/scaling.md)."""

    feature_chunk_cells: int | None = Field(
        None,
        ge=10_000,
        description="grid cells (ASINs x days incl. lookback) per feature chunk; "
        "None = a quarter of the available memory at ~400 bytes a cell, at most 6M",
    )
    score_chunk_days: int = Field(
        7, ge=1, description="whole days scored per chunk (a score row with its reason is ~3x a feature row)"
    )
    ranker: RankerLevers = RankerLevers()
    reasons_per_query: int = Field(
        1000,
        ge=0,
        description="rows of each (site, date) given exact reasons (TreeSHAP, ~1 ms of CPU a row): the "
        "top N by predicted rank; the others get `reasons_rest` (0: no row exact)",
    )
    reasons_rest: Literal["path", "none"] = Field(
        "path",
        description="reasons of the rows beyond each (site, date)'s top `reasons_per_query`: `path` = path "
        'attribution (~15 us of CPU a row, its JSON entries marked `"m": "path"`; docs/model_quality.md), '
        "`none` = null",
    )
    columnar_mart: bool = Field(
        True,
        description="the mart asset also writes each (site, date) slice of mart_timeseries_daily and "
        "fact_keywords as a parquet file under <artifacts>/columnar/ (recorded with the slice in one "
        "transaction), and features_daily scans those files for its 30-day window instead of reading "
        "it from the warehouse (days without a copy still come from the warehouse); false = the "
        "warehouse read only. docs/scaling.md",
    )


# ---- end H-scale ----------------------------------------------------------------------------------


def _check_cron(value: str) -> str:
    # Imported lazily: dagster's cron parser is the one the daemon will use, so it is the judge.
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(value):
        raise ValueError(f"not a valid cron expression: {value!r}")
    return value


class AutomationSettings(StrictModel):
    """When things run (all UTC)."""

    default_status: Literal["running", "stopped"] = Field(
        "running",
        description="initial state of the schedules and sensors on a fresh instance (the UI toggle wins "
        "afterwards); 'stopped' for instances that must not call the API on their own",
    )
    ingest_cron: str = Field(
        "0 * * * *",
        description="ingestion schedule; the seed ran hourly at :00. Each tick launches yesterday's "
        "(date, site) partitions that have neither succeeded nor are in flight, so a day is fetched once "
        "and a missed or failed tick is caught up an hour later",
    )
    ingest_max_attempts: int = Field(
        3, ge=1, description="scheduled launches per (date, site) before the schedule stops retrying it"
    )
    follow_lookback_days: int = Field(
        2,
        ge=1,
        description="how many of the newest days the downstream automation keeps following, so a day "
        "whose ingestion finished late (after midnight) still flows downstream",
    )
    automation_interval_seconds: int = Field(
        30, ge=10, description="how often the automation-condition sensor evaluates the graph"
    )
    retrain_cron: str = Field(
        "0 3 * * 1", description="weekly ranker retraining (Mondays 03:00, after the 02:20 score)"
    )
    freshness_cron: str = Field("0 3 * * *", description="the unpartitioned mart freshness check")

    _crons = field_validator("ingest_cron", "retrain_cron", "freshness_cron")(_check_cron)


class AlertSettings(StrictModel):
    """Where alerts go and what they say."""

    ui_base_url: str = Field(
        "http://127.0.0.1:3000", description="Dagster UI base URL used for the links in alerts"
    )
    top_n: int = Field(20, ge=1, description="tracking alert: a candidate is rank_in_site <= top_n ...")
    # ... and explosive_score >= thresholds.alert_score_min (an existing settings key).
    max_age_days: int = Field(
        3,
        ge=0,
        description="tracking alert only for days at most this old: a backfill of last year does "
        "not page anyone",
    )
    webhook_timeout: float = Field(5.0, gt=0, description="seconds per POST")
    webhook_attempts: int = Field(3, ge=1, le=10, description="POST attempts per message")
    webhook_backoff: float = Field(0.5, ge=0, description="seconds before the 2nd attempt; doubles")
    webhook_max_backoff: float = Field(8.0, ge=0, description="cap on one wait, Retry-After included")
    tick_budget_seconds: float = Field(
        40.0,
        gt=0,
        description="after this long in one sensor tick, remaining alerts are only logged "
        "(a sensor tick must finish well inside Dagster's 60 s evaluation timeout)",
    )
    max_messages_per_tick: int = Field(
        20, ge=1, description="more alerts than this in one tick are summarised in one message"
    )

    @field_validator("ui_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


# --- plausibility bounds (issue 11; owner: H-simulator) ------------------------------------------
Bound = tuple[float, float]


class PlausibilityBounds(StrictModel):
    """Inclusive [low, high] of every value the mart keeps. A value outside is not data but an upstream
    fault (a BSR of 10**12, a price of 1e12): standardise quarantines the row (reason
    ``implausible_value``, with the payload id), nulls the value and sets the row's validity flag
    (``flag_bsr_invalid`` / ``flag_rating_invalid`` / ``flag_price_invalid``; counts have no flag column:
    the quarantine row is their trace). Prices are in the site's currency: ``price_by_site`` overrides
    ``price`` where the unit differs by orders of magnitude (yen, rupees)."""

    bsr_root: Bound = Field((1, 20_000_000), description="root best-seller rank (largest stores ~10M)")
    bsr_sub: Bound = Field((1, 20_000_000), description="sub-category rank")
    review_count: Bound = Field((0, 5_000_000), description="reviews of one product (record ~1M)")
    rating: Bound = Field((1.0, 5.0), description="stars")
    price: Bound = Field((0.01, 100_000.0), description="local currency, sites not in price_by_site")
    price_by_site: dict[str, Bound] = Field(
        default_factory=lambda: {"JP": (1.0, 15_000_000.0), "IN": (1.0, 8_000_000.0)},
        description="price bounds per site where the currency unit is small",
    )
    new_offer_count: Bound = Field((0, 2_000), description="sellers offering the product new")
    bullet_count: Bound = Field((0, 30), description="listing bullet points (Amazon shows up to 10)")
    image_count: Bound = Field((0, 60), description="listing images")
    title_length: Bound = Field((1, 1_000), description="title characters (Amazon allows 200-500)")
    attribute_flag_count: Bound = Field((0, 100), description="listing attribute flags set")
    search_volume: Bound = Field((0, 500_000_000), description="monthly searches of a keyword")

    @model_validator(mode="after")
    def _ordered(self) -> PlausibilityBounds:
        named = {name: getattr(self, name) for name in type(self).model_fields if name != "price_by_site"}
        named.update({f"price_by_site.{site}": b for site, b in self.price_by_site.items()})
        wrong = [name for name, (low, high) in named.items() if low > high]
        if wrong:
            raise ValueError(f"plausibility bounds with low > high: {', '.join(wrong)}")
        return self

    def price_for(self, site: str) -> Bound:
        return self.price_by_site.get(site, self.price)


# --- end plausibility bounds ---------------------------------------------------------------------


# --- H-upstream: per-request retry time budget (issue 11) -----------------------------------------
class RetryBudget(StrictModel):
    """How long one upstream request may keep waiting out what the server asks for (429 with
    Retry-After, 5xx, timeouts, dropped connections) before it is recorded as failed for good."""

    budget_s: float = Field(
        180.0, gt=0, description="seconds from a request's first attempt; retries by time, not count"
    )


# --- end H-upstream ---------------------------------------------------------------------------------


# --- H-artifacts: where runs keep what a later run needs (issue 15) --------------------------------
class StorageSettings(StrictModel):
    """Artifact and export locations as URLs, so a run on another machine (a Kubernetes pod) finds
    what an earlier run wrote. Unset = the local ``artifacts_dir`` / ``exports_dir`` (``file://``),
    the embedded default. Credentials never live here: s3fs / gcsfs read them from the environment
    (``AWS_ACCESS_KEY_ID`` ..., ``AWS_ENDPOINT_URL`` for an S3-compatible server)."""

    artifacts_url: str | None = Field(
        None,
        description="models, samples, tuning: a path, file://, s3:// or gs:// URL (default: artifacts_dir)",
    )
    exports_url: str | None = Field(
        None, description="export files and plots: a path, file://, s3:// or gs:// URL (default: exports_dir)"
    )
    optuna_url: str | None = Field(
        None,
        description="Optuna's database (sqlite:///..., postgresql+psycopg://...); default: the PostgreSQL "
        "warehouse (schema <pg_schema>_optuna), else a SQLite file under a local artifacts location",
    )


# --- H-reliab: one fetch per partition at a time (issue 11) -----------------------------------------
class IngestLeases(StrictModel):
    """The lease ``raw_payloads`` holds on each (site, date) it fetches (``ingest_leases`` table), so
    a second ingest of a partition being fetched fails at once, naming the holder, instead of
    spending the API quota again."""

    ttl_s: float = Field(
        6 * 3600.0,
        gt=0,
        description="seconds a fetch's lease lasts; a holder that died frees its partitions after it",
    )


# --- end H-reliab -----------------------------------------------------------------------------------
# --- H-ranker: realised outcomes of the model's lists (issue 14) ----------------------------------
class OutcomeSettings(StrictModel):
    """When the model's realised lists count as worse than the baseline's (check
    ``model_beats_baseline_realised`` on ``realised_outcomes``)."""

    window_days: int = Field(28, ge=1, description="rolling window of realised prediction dates")
    k: Literal[10, 20, 50] = Field(20, description="precision@k compared (one of the stored k)")
    min_days: int = Field(7, ge=1, description="realised days the window needs before it can WARN")


# --- end H-ranker -----------------------------------------------------------------------------------
# --- H-retrain: the weekly retraining refuses a worse model (issue 14) ------------------------------
class PromotionSettings(StrictModel):
    """When ``ranker_model`` promotes a newly trained model: its mean NDCG@20 on the latest
    ``folds`` walk-forward folds (``every_days`` each, ending on the newest realised day) is at
    least the promoted model's minus ``tolerance``, both scored on the same rows."""

    # bounded as the backtest's folds and every_days are (levers.BacktestWindow): 1..100, 1..365
    folds: Folds = Field(2, description="latest walk-forward folds both models are judged on, 1..100")
    every_days: FoldDays = Field(28, description="days of reference dates per fold, 1..365")
    tolerance: float = Field(
        0.02, ge=0, le=1, description="NDCG@20 the new model may lose and still be promoted"
    )


# --- end H-retrain ----------------------------------------------------------------------------------


class Settings(StrictModel):
    environment: Literal["dev", "test", "prod"] = "dev"
    sites: tuple[str, ...] = ("US", "UK", "DE", "JP")
    # the date flags' range (levers.FIRST_DAY..LAST_DAY): a train_samples end_date may be as early as
    # this day, and its window reaches back from it (0001-01-01 overflowed that date arithmetic)
    partitions_start: date = Field(
        date(2025, 1, 1),
        ge=FIRST_DAY,
        le=LAST_DAY,
        description="first daily partition, YYYY-MM-DD in 1970-01-01..2999-12-31",
    )
    rate_limits: dict[str, RateLimit] = Field(
        default_factory=lambda: {
            "unified": RateLimit(qpm=6000, burst=50, timeout=10.0),
            "keepa": RateLimit(qpm=60, burst=60, timeout=30.0),
        }
    )
    retry_policy: RetryPolicy = RetryPolicy()
    asset_retry: AssetRetry = AssetRetry()
    retry: RetryBudget = RetryBudget()  # H-upstream: upstream retry time budget
    windows: Windows = Windows()
    thresholds: Thresholds = Thresholds()
    upstream: UpstreamSettings = UpstreamSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    score_weights: ScoreWeights = ScoreWeights()
    warehouse_url: str = Field(
        "data/warehouse.duckdb",
        description="a DuckDB file path (or duckdb:///path) or a postgresql:// URL",
    )
    exports_dir: Path = Path("exports")
    top_candidates: int = Field(
        100,
        ge=1,
        le=100,
        description="rows per site in the top-candidates export (the view keeps the top 100)",
    )
    min_category_size: int = Field(30, ge=2, description="smaller categories score at site level")
    artifacts_dir: Path = Path("artifacts")
    api_pool: str = Field("upstream_api", description="Dagster pool shared by ingestion runs")
    automation: AutomationSettings = AutomationSettings()
    alerts: AlertSettings = AlertSettings()
    plausibility: PlausibilityBounds = PlausibilityBounds()  # issue 11, H-simulator
    scale: ScaleSettings = ScaleSettings()  # H-scale (issue 13)
    storage: StorageSettings = StorageSettings()  # issue 15, H-artifacts: artifact / export URLs
    leases: IngestLeases = IngestLeases()  # issue 11, H-reliab: fetch leases
    outcomes: OutcomeSettings = OutcomeSettings()  # issue 14, H-ranker
    promotion: PromotionSettings = PromotionSettings()  # issue 14, H-retrain

    @field_validator("sites", mode="before")
    @classmethod
    def _split_sites(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("sites")
    @classmethod
    def _known_sites(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one site is required")
        unknown = [s for s in value if s not in KNOWN_SITES]
        if unknown:
            raise ValueError(f"unknown site(s) {unknown}; known: {', '.join(KNOWN_SITES)}")
        if len(set(value)) != len(value):
            raise ValueError("sites must be unique")
        return value

    @model_validator(mode="after")
    def _sources_name_sites(self) -> Settings:
        extra = set(self.upstream.source_by_site) - set(self.sites)
        if extra:
            raise ValueError(f"upstream.source_by_site names sites not in `sites`: {sorted(extra)}")
        if "unified" not in self.rate_limits:
            raise ValueError("rate_limits must define the 'unified' source")
        return self

    def rate_limit(self, source: str) -> RateLimit:
        return self.rate_limits.get(source, RateLimit())


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return overrides


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_error(error: ValidationError, origin: str) -> str:
    lines = [f"invalid settings ({origin}):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        got = item.get("input")
        # a date read from YAML as itself (0001-01-01), not as its repr (datetime.date(1, 1, 1))
        value = got.isoformat() if isinstance(got, date) else repr(got)
        shown = "" if isinstance(got, dict) else f" (got {value})"
        lines.append(f"  {key}: {item['msg']}{shown}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build settings from defaults, the YAML file and the environment; raise SettingsError
    naming every bad key."""
    environ = dict(os.environ if environ is None else environ)
    if path is None:
        env_path = environ.get(SETTINGS_FILE_ENV)
        path = (
            Path(env_path)
            if env_path
            else (DEFAULT_SETTINGS_FILE if DEFAULT_SETTINGS_FILE.exists() else None)
        )
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise SettingsError(f"settings file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"settings file {path} must hold a mapping at the top level")
        data = loaded
        origin = str(path)
    overrides = _env_overrides(environ)
    if overrides:
        data = _deep_merge(data, overrides)
        origin += f" + env {ENV_PREFIX}*"
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_format_error(exc, origin)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests call ``get_settings.cache_clear()``)."""
    return load_settings()
