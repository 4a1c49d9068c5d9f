"""Keepa's product API as an upstream source: its endpoint, its request shape, its token waits.

What one ``fetch_day(site, day)`` does:

1. **Universe** (which ASINs to ask for; Keepa has no "tracked universe" route):
   ``universe_source="unified"`` asks the unified API's ``/v1/sites/{site}/asins?date=D`` (its pages
   are stored with ``source = "unified"``, so the coverage check counts every ASIN that should have
   been fetched, including the ones Keepa or the token budget lost); ``"file"`` reads
   ``tracked_asins_path`` (one ASIN a line, ``{site}`` substituted; nothing is stored for it). The
   ingest asset adds the site's ASINs already in ``dim_asin`` when ``track_known_asins`` is set.
2. **Products**: ``GET {base_url}/product?key=...&domain=<id>&asin=A,B,...`` in batches of <= 100 with
   ``stats``, ``rating=1``, ``history=1``, ``days=N``, ``aplus=1``, ``videos=1`` (``buybox=1`` only if
   configured: it costs 2 more tokens a product). ``days`` = ``max(history_days, days since the
   partition day + 2)``. One request at a time: the token bucket is the bottleneck.

Tokens (``keepa_tokens.py``; ``docs/keepa.md``, "Token accounting"): before a request costing n
tokens (1 per ASIN, +1 with ``rating``, +2 with ``buybox``) the client waits ``wait_seconds`` of the
last status seen; a wait longer than ``max_token_wait_s`` stops the fetch (the rest is reported
missing). The budget (``token_budget``, per Dagster run) is charged what ``tokensConsumed`` says; a
batch that could exceed it is shrunk, then the fetch stops. A 429 carries the status, so the retry
waits refillIn plus the deficit. Everything else (pacing, retries, backoff, counters, scrubbing) is
the shared core of ``http.py``.

Secrets: ``api_key`` (and ``universe_token``) are ``dg.EnvVar`` fields resolved at run time, like the
unified client's token. Keepa wants the key in the query string: it is masked (``key=***``) in stored
``request_params``, scrubbed from stored bodies and error texts, absent from reprs, and redacted from
httpx's log lines. Each product response becomes a ``raw_payloads`` row with ``source = "keepa"``
and endpoint ``/product``; its ``fetched_at`` is the body's ``timestamp`` (Keepa's clock).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import dagster as dg
import httpx
from pydantic import PrivateAttr

from asin_platform.core.keepa import PRODUCT_ENDPOINT, SITE_TO_DOMAIN
from asin_platform.resources.upstream.base import (
    BATCH_KINDS,
    DayFetch,
    FetchReport,
    MissingSecretError,
    RawResponse,
    UpstreamError,
)
from asin_platform.resources.upstream.http import (
    MASK,
    Attempt,
    Exchange,
    HttpCore,
    HttpUpstreamClient,
    Request,
    resolve_secret,
    run_sync,
)
from asin_platform.resources.upstream.keepa_tokens import (
    STATUS,
    TokenStatus,
    parse_token_status,
    wait_seconds,
)
from asin_platform.resources.upstream.ratelimit import TokenBucket, shared_bucket
from asin_platform.resources.upstream.unified import TOKEN_ENV, bearer_client, fetch_universe

if TYPE_CHECKING:
    from asin_platform.settings import Settings

TOKEN_ENDPOINT = "/token"
KEEPA_API_KEY_ENV = "KEEPA_API_KEY"
UNIVERSE_SOURCES = ("unified", "file")
MAX_BATCH = 100  # Keepa's limit of ASINs per product request

KeepaMissingKeyError = MissingSecretError  # the name callers know


@dataclass
class KeepaFetchReport(FetchReport):
    """``FetchReport`` plus Keepa's token accounting (all counts, so a ranged run can sum them)."""

    tokens_consumed: int = 0
    token_wait_s: float = 0.0
    budget_capped: int = 0  # ASINs not requested: the run's token budget was spent
    wait_capped: int = 0  # ASINs not requested: the next token wait exceeded max_token_wait_s
    tokens_left: int | None = None  # the last status seen (not summed into metadata)
    stop_reason: str = ""

    def as_metadata(self) -> dict[str, int | float | str]:
        meta = super().as_metadata()
        meta.update(
            tokens_consumed=self.tokens_consumed,
            token_wait_s=round(self.token_wait_s, 3),
            budget_capped_asins=self.budget_capped,
            wait_capped_asins=self.wait_capped,
        )
        return meta


class KeepaClient(HttpUpstreamClient):
    """Keepa's product API over httpx: token-aware waits, 429 recovery, a per-run token budget."""

    source: ClassVar[str] = "keepa"

    base_url: str = "https://api.keepa.com"
    # A dg.EnvVar (from_settings) resolved at run time; "" = not configured (most sites need none).
    api_key: str = ""
    token_budget: int = 10_000  # max tokens one run may spend
    batch_size: int = MAX_BATCH
    history_days: int = 3  # minimum ``days``: the partition day plus margin for carried values
    stats_days: int = 30  # ``stats`` (free): gives buyBoxIsPrimeEligible for attribute_flag_count
    rating: bool = True  # csv[16] rating, csv[17] review count (up to +1 token a product)
    aplus: bool = True  # has_aplus (free)
    videos: bool = True  # the video attribute flag (free)
    buybox: bool = False  # buybox_seller (+2 tokens a product)
    timeout: float = 30.0
    qpm: int = 60  # HTTP requests per minute (pacing only; tokens are the real limit)
    burst: int = 60
    max_token_wait_s: float = 3600.0  # a longer single wait stops the fetch (rest reported missing)
    universe_source: str = "unified"  # "unified" (the unified API's universe route) or "file"
    universe_base_url: str = "http://127.0.0.1:8765"
    universe_token: str = ""  # the unified API's token, a dg.EnvVar like api_key
    universe_page_size: int = 1000
    tracked_asins_path: str = "config/tracked_asins/{site}.txt"
    track_known_asins: bool = True  # the ingest asset adds dim_asin's ASINs of the site

    _spent: int = PrivateAttr(default=0)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> KeepaClient:
        """From typed settings: base URL, budget, the ``keepa`` rate limit, the retry policy; the key
        as ``dg.EnvVar(KEEPA_API_KEY)`` only when a site uses Keepa (Dagster refuses to start a run
        whose EnvVar is unset, and a unified-only deployment has no Keepa key)."""
        needed = any(settings.upstream.source_for(site) == "keepa" for site in settings.sites)
        config: dict[str, Any] = dict(
            base_url=settings.upstream.keepa_base_url,
            api_key=dg.EnvVar(KEEPA_API_KEY_ENV) if needed else "",
            universe_token=dg.EnvVar(TOKEN_ENV) if needed else "",
            token_budget=settings.upstream.keepa_token_budget,
            **cls.http_config(settings, "keepa"),
            universe_base_url=settings.upstream.base_url,
            universe_page_size=settings.upstream.page_size,
        )
        config.update(overrides)
        return cls(**config)

    # Secrets must not leak through repr/str (pydantic prints every field by default).
    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield (name, MASK if name in ("api_key", "universe_token") and value else value)

    # -- run-scoped budget ---------------------------------------------------------------------
    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Dagster builds this resource once per run: the budget is per run.
        self._spent = 0

    @property
    def tokens_spent(self) -> int:
        """Tokens spent against ``token_budget`` since the run (or the last ``reset_budget``) began."""
        return self._spent

    def reset_budget(self) -> None:
        self._spent = 0

    # -- hooks (the simulated client overrides these) --------------------------------------------
    def key_value(self) -> str:
        """The access key; raises ``KeepaMissingKeyError`` (naming the variable) when it is unset."""
        return resolve_secret(self.api_key, "Keepa access key", KEEPA_API_KEY_ENV)

    def _universe_token(self) -> str:
        return resolve_secret(self.universe_token, "Keepa universe from the unified API", TOKEN_ENV)

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        return None  # the real network

    def _universe_transport(self) -> httpx.AsyncBaseTransport | None:
        return None

    def _scope(self) -> str:
        """Who owns the token bucket besides the key: the server."""
        return self.base_url.rstrip("/")

    def _clock(self) -> float:
        return time.monotonic()

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def _headers(self, day: date) -> dict[str, str]:
        return {"User-Agent": "asin-platform", "Accept-Encoding": "gzip"}

    def _as_of(self, day: date) -> datetime:
        """The instant the server's data will be as of (the real service: now)."""
        return datetime.now(UTC)

    # -- request shape ---------------------------------------------------------------------------
    def cost_per_asin(self) -> int:
        """Worst-case tokens per product of one request (see the module docstring)."""
        return 1 + int(self.rating) + 2 * int(self.buybox)

    def request_params(
        self, site: str, day: date, asins: Sequence[str], first: date | None = None
    ) -> dict[str, str]:
        """The product request's query parameters, without the key. ``first``: the first day of a
        range request made as of ``day`` (its last day): ``days`` then reaches back to ``first``.
        Keepa charges per product whatever ``days`` is; asking only the days the run lacks keeps the
        responses (and the stored payloads) small."""
        as_of = self._as_of(day).date()
        days = max(self.history_days, (as_of - (first or day)).days + 2)
        params = {
            "domain": str(SITE_TO_DOMAIN[site]),
            "asin": ",".join(asins),
            "stats": str(self.stats_days),
            "history": "1",
            "days": str(days),
        }
        for name in ("rating", "aplus", "videos", "buybox"):
            if getattr(self, name):
                params[name] = "1"
        return params

    def _validate(self) -> None:
        problems = []
        if not 1 <= self.batch_size <= MAX_BATCH:
            problems.append(f"batch_size must be 1..{MAX_BATCH}, got {self.batch_size}")
        if self.token_budget < 0:
            problems.append(f"token_budget must be >= 0, got {self.token_budget}")
        if self.history_days < 1:
            problems.append(f"history_days must be >= 1, got {self.history_days}")
        problems += self._validate_http()
        if self.universe_source not in UNIVERSE_SOURCES:
            problems.append(
                f"universe_source must be one of {UNIVERSE_SOURCES}, got {self.universe_source!r}"
            )
        if problems:
            raise ValueError("invalid Keepa client config: " + "; ".join(problems))

    # -- fetch -----------------------------------------------------------------------------------
    def fetch_day(
        self,
        site: str,
        day: date,
        progress: Callable[[str], None] | None = None,
        *,
        extra_asins: Sequence[str] = (),
    ) -> DayFetch:
        """Fetch the products of the site's universe (plus ``extra_asins``) for ``day``."""
        self._validate()
        if site not in SITE_TO_DOMAIN:
            raise ValueError(f"site {site!r} has no Keepa domain; Keepa sites: {sorted(SITE_TO_DOMAIN)}")
        key = self.key_value()
        try:
            return run_sync(lambda: self._fetch_day_async(site, day, progress, key, list(extra_asins)))
        except (UpstreamError, MissingSecretError):
            raise
        except Exception as exc:
            # Belt and braces: an exception text that somehow carries the URL must not leak the key.
            text = str(exc)
            if key in text:
                raise RuntimeError(f"Keepa fetch {site} {day} failed: {text.replace(key, MASK)}") from None
            raise

    def fetch_range(
        self,
        site: str,
        days: list[date],
        progress: Callable[[str], None] | None = None,
        *,
        extra_asins: Mapping[date, Sequence[str]] | None = None,
    ) -> list[DayFetch]:
        """One ``DayFetch`` per day of ``days`` (consecutive), buying each product ONCE for all of them.

        The universe is fetched per day; ``/product`` is asked once per batch of the union of the
        days' universes (plus each day's ``extra_asins``), as of the last day with ``days`` reaching back to the
        first. Those responses are stored with the FIRST day, their range in ``covers``
        (docs/architecture.md, "Range payloads"); the parser folds them into every day they cover.
        The first day's report carries the product requests and the tokens of the whole range."""
        self._validate()
        if site not in SITE_TO_DOMAIN:
            raise ValueError(f"site {site!r} has no Keepa domain; Keepa sites: {sorted(SITE_TO_DOMAIN)}")
        extra = {day: list((extra_asins or {}).get(day, ())) for day in days}
        if len(days) == 1:
            return [self.fetch_day(site, days[0], progress, extra_asins=extra[days[0]])]
        key = self.key_value()

        async def run() -> list[DayFetch]:
            universes = [await self._universe(site, day, key) for day in days]
            tracked_by_day = [
                list(dict.fromkeys([*asins, *extra[day]]))
                for day, (asins, _) in zip(days, universes, strict=True)
            ]
            union = list(dict.fromkeys(a for tracked in tracked_by_day for a in tracked))
            head = await self._fetch_day_async(site, days[-1], progress, key, [], days[0], union)
            lost = set(head.report.missing_asins.get("products", []))
            out = []
            for i, (day, (_, pages), tracked) in enumerate(zip(days, universes, tracked_by_day, strict=True)):
                report = replace(head.report) if i == 0 else KeepaFetchReport(site, day, self.source, 0)
                responses = [*pages, *head.responses] if i == 0 else list(pages)
                report.day, report.tracked_asins = day, len(tracked)
                report.received_asins = {"products": sum(a not in lost for a in tracked)}
                report.missing_asins = {kind: [] for kind in BATCH_KINDS}
                report.missing_asins["products"] = [a for a in tracked if a in lost]
                report.requests = len(responses)
                report.record_failures(responses)
                out.append(
                    DayFetch(
                        site=site,
                        day=day,
                        universe=tracked,
                        responses=responses,
                        report=report,
                        unreachable=head.unreachable,
                    )
                )
            return out

        return run_sync(run)

    def _core(self, http: httpx.AsyncClient, bucket: TokenBucket, secrets: tuple[str, ...]) -> HttpCore:
        return HttpCore(
            http,
            bucket,
            self.retry_policy(),
            secrets=secrets,
            clock=self._clock,
            sleep=self._sleep,
            timeout=self.timeout,
        )

    async def _fetch_day_async(
        self,
        site: str,
        day: date,
        progress: Callable[[str], None] | None,
        key: str,
        extra_asins: list[str],
        first: date | None = None,
        universe: list[str] | None = None,
    ) -> DayFetch:
        """One fetch as of ``day``; with ``first`` its history reaches back to ``first`` (a range),
        with ``universe`` the universe pages are not fetched (the range fetched them per day)."""
        started = time.perf_counter()
        responses: list[RawResponse] = []
        if universe is None:
            universe, responses = await self._universe(site, day, key)
        universe = list(dict.fromkeys([*universe, *extra_asins]))
        report = KeepaFetchReport(site=site, day=day, source=self.source, tracked_asins=len(universe))
        if progress is not None:
            progress(f"keepa {site} {day}: {len(universe)} ASINs, {self.cost_per_asin()} tokens/ASIN at most")
        pacer = shared_bucket(self._scope() + "#keepa", key, self.qpm / 60.0, float(self.burst))
        async with httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers(day),
            timeout=httpx.Timeout(self.timeout),
            transport=self._transport(),
        ) as http:
            tokens = _Tokens(self, self._core(http, pacer, (key,)), key)
            received, missing = await self._products(tokens, site, day, universe, report, progress, first)
        report.received_asins = {"products": len(received)}
        report.missing_asins = {kind: [] for kind in BATCH_KINDS}
        report.missing_asins["products"] = list(dict.fromkeys(missing))
        responses.extend(tokens.responses)
        tokens.core.counters.fill(report, responses)
        report.token_wait_s = tokens.waited
        report.tokens_consumed = tokens.consumed
        last = await tokens.status(fetch=False)
        report.tokens_left = last.tokens_left if last is not None else None
        report.elapsed_s = time.perf_counter() - started
        breaker = tokens.core.breaker
        if progress is not None:
            progress(
                f"keepa {site} {day} done: {len(received)}/{len(universe)} products, "
                f"{report.tokens_consumed} tokens, {report.http_calls} calls, {report.failed_requests} failed"
                + (f"; stopped: {report.stop_reason}" if report.stop_reason else "")
            )
        unreachable = breaker.error() if breaker.open else None
        return DayFetch(
            site=site, day=day, universe=universe, responses=responses, report=report, unreachable=unreachable
        )

    async def _products(
        self,
        tokens: _Tokens,
        site: str,
        day: date,
        universe: list[str],
        report: KeepaFetchReport,
        progress: Callable[[str], None] | None,
        first: date | None = None,
    ) -> tuple[set[str], list[str]]:
        """Request the universe in affordable batches: (ASINs received, ASINs missing)."""
        received: set[str] = set()
        missing: list[str] = []
        per_asin = self.cost_per_asin()
        position = 0
        last_decile = 0
        while position < len(universe):
            status = await tokens.status()
            size = min(self.batch_size, len(universe) - position)
            if status is not None and status.refill_rate_per_min > 0:
                # Never ask for more than the bucket can hold (an hour of refill): it could never be paid.
                size = min(size, max(1, status.refill_rate_per_min * 60 // per_asin))
            affordable = (self.token_budget - self._spent) // per_asin
            rest = universe[position:]
            if affordable < 1:
                report.budget_capped = len(rest)
                report.stop_reason = (
                    f"token budget of {self.token_budget} spent; {len(rest)} ASINs not requested"
                )
                missing.extend(rest)
                break
            batch = tuple(universe[position : position + min(size, affordable)])
            got, stopped = await tokens.product(site, day, batch, first)
            if stopped:
                report.wait_capped = len(rest)
                report.stop_reason = stopped
                missing.extend(rest)
                break
            position += len(batch)
            received |= got
            missing.extend(a for a in batch if a not in got)
            decile = position * 10 // len(universe)
            if progress is not None and decile > last_decile:
                last_decile = decile
                progress(
                    f"keepa {site} {day}: {position}/{len(universe)} ASINs, {tokens.consumed} tokens, "
                    f"{tokens.core.counters.retries} retries, waited {tokens.waited:.1f}s for tokens"
                )
        return received, missing

    # -- universe --------------------------------------------------------------------------------
    async def _universe(self, site: str, day: date, key: str) -> tuple[list[str], list[RawResponse]]:
        if self.universe_source == "file":
            return self._universe_from_file(site), []
        token = self._universe_token()
        # Pages are few and sequential: a private pacer at the Keepa client's request rate suffices.
        bucket = TokenBucket(self.qpm / 60.0, float(self.burst))
        http = bearer_client(self.universe_base_url, token, self.timeout, 1, self._universe_transport())
        async with http:
            core = self._core(http, bucket, (token, key))
            universe, pages = await fetch_universe(core, site, day, self.universe_page_size, source="unified")
        return universe, pages

    def _universe_from_file(self, site: str) -> list[str]:
        path = Path(self.tracked_asins_path.format(site=site))
        if not path.exists():
            raise ValueError(f"Keepa tracked-ASIN list for {site} not found: {path}")
        asins = []
        for line in path.read_text().splitlines():
            asin = line.split("#", 1)[0].strip()
            if asin:
                asins.append(asin)
        return list(dict.fromkeys(asins))


# ------------------------------------------------------------------------------------- token waits
class _Tokens:
    """One fetch_day's Keepa accounting: the remembered status, token waits, the budget charge."""

    def __init__(self, cfg: KeepaClient, core: HttpCore, key: str) -> None:
        self.cfg = cfg
        self.core = core
        self.scope = hashlib.sha256(f"{cfg._scope()}\0{key}".encode()).hexdigest()
        self.waited = 0.0
        self.consumed = 0
        self.responses: list[RawResponse] = []

    def charge(self, tokens: int) -> None:
        """Count ``tokens`` against this fetch and the run's budget."""
        self.consumed += tokens
        self.cfg._spent += tokens

    def observe(self, body: Any) -> None:
        """Remember the token status a Keepa body carries (every response does, 429s included)."""
        if not isinstance(body, dict):
            return
        try:
            status = parse_token_status(body)
        except ValueError:
            return
        STATUS.put(self.scope, status, self.cfg._clock())

    async def status(self, *, fetch: bool = True) -> TokenStatus | None:
        """The projected token status; asks the free ``/token`` route when none is known yet."""
        status = STATUS.get(self.scope, self.cfg._clock())
        if status is not None or not fetch:
            return status
        attempt = await self.core.send(TOKEN_ENDPOINT, {"key": self.core.secrets[0]})
        if attempt.status == 200:
            self.observe(attempt.json)
        return STATUS.get(self.scope, self.cfg._clock())

    async def product(
        self, site: str, day: date, batch: tuple[str, ...], first: date | None = None
    ) -> tuple[set[str], str]:
        """One product request through the core: (ASINs received, why the fetch must stop or "").
        With ``first`` (< ``day``) it serves the days ``first..day`` and is stored with ``covers``."""
        params = self.cfg.request_params(site, day, batch, first)
        covers = {"covers": f"{first}..{day}"} if first is not None and first < day else {}
        req = Request(
            PRODUCT_ENDPOINT,
            site,
            {**params, "key": MASK},
            batch,
            secret_params={"key": self.core.secrets[0]},
            source="keepa",
            annotations=covers,
        )
        exchange = _ProductExchange(self, self.cfg.cost_per_asin() * len(batch))
        outcome = await self.core.request(req, exchange)
        if outcome.raw is None:
            return set(), outcome.stopped
        self.responses.append(outcome.raw)
        products = outcome.body["products"] if outcome.body is not None else []
        got = {p["asin"] for p in products if isinstance(p, dict) and isinstance(p.get("asin"), str)}
        return got & set(batch), ""


class _ProductExchange(Exchange):
    """How Keepa answers ``/product``: token status in every body, 402/403 for a refused key."""

    list_key = "products"
    fatal = {401: "access key rejected", 402: "access key rejected", 403: "access key rejected"}

    def __init__(self, tokens: _Tokens, cost: int) -> None:
        self.tokens = tokens
        self.cost = cost

    async def before_attempt(self) -> str:
        cfg = self.tokens.cfg
        status = await self.tokens.status()
        if status is None:
            return ""
        wait = wait_seconds(status, self.cost)
        if wait > cfg.max_token_wait_s:
            return (
                f"next batch needs {self.cost} tokens, {status.tokens_left} left at "
                f"{status.refill_rate_per_min}/min: a {wait:.0f}s wait exceeds "
                f"max_token_wait_s={cfg.max_token_wait_s:.0f}"
            )
        if wait > 0:
            self.tokens.waited += wait
            await cfg._sleep(wait)
        return ""

    def after_attempt(self, attempt: Attempt, usable: bool) -> None:
        self.tokens.observe(attempt.json)
        # A 200 is charged even when unreadable: the budget assumes the worst (the tokens may be gone).
        self.tokens.charge(_consumed(attempt.json, self.cost if attempt.status == 200 else 0))

    def throttle_wait(self, attempt: Attempt) -> float | None:
        # The body's status (just observed) makes the next attempt wait refillIn + the deficit.
        return 0.0 if isinstance(attempt.json, dict) and "tokensLeft" in attempt.json else None

    def retry_blocker(self) -> str:
        cfg = self.tokens.cfg
        # A retry may be charged again (an unreadable 200 was): only retry what the budget can pay.
        return "" if cfg.token_budget - cfg._spent >= self.cost else "no token budget left to retry"

    def fetched_at(self, attempt: Attempt, received: datetime) -> datetime:
        body = attempt.json
        if isinstance(body, dict) and isinstance(body.get("timestamp"), int):
            return datetime.fromtimestamp(body["timestamp"] / 1000, UTC)
        return received


def _consumed(body: Any, default: int) -> int:
    """``tokensConsumed`` of a Keepa body (the ground truth), else ``default``."""
    if isinstance(body, dict):
        value = body.get("tokensConsumed")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return default
