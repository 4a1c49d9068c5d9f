"""The Keepa client against the simulator's Keepa mode: token waits, 429 recovery, overdrawn balances,
the per-run budget, retries, the universe sources, and a key that never leaks.

Token waits run on the simulated client's virtual clock: minutes of waiting cost microseconds, and
``virtual_clock().slept`` says how long the client waited."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from asin_platform.resources.upstream import (
    KeepaClient,
    KeepaFetchReport,
    KeepaMissingKeyError,
    UpstreamError,
)
from asin_platform.resources.upstream.keepa_tokens import (
    TokenStatus,
    parse_token_status,
    project_status,
    wait_seconds,
)
from asin_platform.simulator import KeepaPlan, Market, MarketConfig, create_app
from asin_platform.simulator.clients import SIMULATED_KEEPA_KEY, SimulatedKeepaClient, reset_simulated_keepa

SITES = ["US", "UK", "DE", "JP"]
N_ASINS = 120
DAY = date(2025, 3, 10)
SECRET = "KEEPA-SECRET-7f3a9c0d1e2b4a5968"


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Every test gets fresh simulated keys (buckets) and no remembered token status; markets are kept.
    monkeypatch.delenv("KEEPA_API_KEY", raising=False)
    reset_simulated_keepa(keep_markets=True)
    yield
    reset_simulated_keepa(keep_markets=True)


def _client(**knobs: Any) -> SimulatedKeepaClient:
    return SimulatedKeepaClient(
        sim_asins_per_site=N_ASINS, sim_sites=SITES, base_delay=0.001, max_delay=0.01, **knobs
    )


def _tracked(site: str = "US", day: date = DAY) -> list[str]:
    return Market(MarketConfig(sites=tuple(SITES), asins_per_site=N_ASINS)).universe(site, day)


def _report(fetched: Any) -> KeepaFetchReport:
    assert isinstance(fetched.report, KeepaFetchReport)
    return fetched.report


def test_one_day_is_fetched_and_recorded_as_keepa_rows() -> None:
    client = _client()
    fetched = client.fetch_day("JP", DAY)
    report = _report(fetched)
    tracked = _tracked("JP")
    assert fetched.universe == tracked
    assert report.source == "keepa" and report.received_asins["products"] == len(tracked)
    assert report.missing_asins["products"] == [] and report.failed_requests == 0
    universe_pages = [r for r in fetched.responses if r.endpoint != "/product"]
    products = [r for r in fetched.responses if r.endpoint == "/product"]
    # the universe came from the unified route and is stored as such; the products are Keepa's
    assert [getattr(r, "source", None) for r in universe_pages] == ["unified"]
    assert products and all(getattr(r, "source", None) == "keepa" for r in products)
    params = products[0].params
    assert params["domain"] == "5" and params["key"] == "***"
    assert {"stats", "rating", "history", "days", "aplus", "videos"} <= set(params)
    assert "buybox" not in params  # 2 more tokens a product: off unless configured
    # fetched_at is Keepa's timestamp: the simulated client asks for the market as of the day's end
    assert products[0].fetched_at == datetime(2025, 3, 10, 23, 59, tzinfo=UTC)
    assert report.tokens_consumed == client.tokens_spent > 0
    assert client.simulator_app().state.keepa.tokens_consumed == report.tokens_consumed


def test_token_waits_do_not_spend_the_retry_budget() -> None:
    # Minutes of token waits per batch, 5xx on a third of the requests, a 2 s retry budget: the
    # waits for tokens are Keepa's accounting, not retries, so nothing fails for good.
    client = _client(
        sim_refill_rate=20,
        sim_initial_tokens=30,
        batch_size=20,
        error_5xx_rate=0.3,
        fault_seed=3,
        retry_budget_s=2.0,
        max_attempts=1,
    )
    report = _report(client.fetch_day("US", DAY))
    assert report.server_errors > 0 and report.failed_requests == 0 and report.failures == []
    assert report.received_asins["products"] == len(_tracked())
    assert report.token_wait_s > 60  # far beyond the budget, which bounds only the retries


def test_token_exhaustion_waits_for_the_refill_instead_of_hitting_429() -> None:
    # 30 tokens, 20 a minute; 20-ASIN batches cost up to 40 tokens each
    client = _client(sim_refill_rate=20, sim_initial_tokens=30, batch_size=20)
    report = _report(client.fetch_day("US", DAY))
    tracked = _tracked()
    assert report.received_asins["products"] == len(tracked) and report.failed_requests == 0
    assert report.throttled == 0  # the client waited before asking: no 429 at all
    consumed = client.simulator_app().state.keepa.tokens_consumed
    assert consumed == report.tokens_consumed
    slept = client.virtual_clock().slept
    assert report.token_wait_s == pytest.approx(slept) and slept > 0
    # Keepa refills once a minute: spending `consumed` from 30 needs at least this many refills ...
    assert slept >= ((consumed - 30) / 20 - 1) * 60
    # ... and the client never overdrew the bucket (it waits for the worst-case cost)
    assert client.simulator_app().state.keepa.bucket(SIMULATED_KEEPA_KEY).tokens >= 0


def test_429_waits_refill_in_plus_the_deficit_and_recovers() -> None:
    client = _client(sim_refill_rate=20, batch_size=20)
    first = _report(client.fetch_day("US", DAY))
    assert first.throttled == 0
    # another consumer of the same key spends everything the client believes it still has
    client.simulator_app().state.keepa.bucket(SIMULATED_KEEPA_KEY).set_tokens(0)
    before = client.virtual_clock().slept
    report = _report(client.fetch_day("US", DAY + timedelta(days=1)))
    assert report.throttled == 1 and report.retries >= 1
    assert report.received_asins["products"] == len(_tracked(day=DAY + timedelta(days=1)))
    assert report.failed_requests == 0
    # after the 429 (balance 0) a 40-token batch waits refillIn (<= 60 s) + 40 / 20 per minute
    waited = client.virtual_clock().slept - before
    assert waited >= 40 / 20 * 60


def test_a_negative_balance_is_waited_out() -> None:
    client = _client(sim_refill_rate=20, batch_size=20)
    client.fetch_day("US", DAY)  # learns the balance
    bucket = client.simulator_app().state.keepa.bucket(SIMULATED_KEEPA_KEY)
    bucket.set_tokens(1)  # admitted (balance > 0), then overdrawn by the whole batch
    before = client.virtual_clock().slept
    fetched = client.fetch_day("US", DAY + timedelta(days=1))
    report = _report(fetched)
    import json

    lefts = [json.loads(r.body)["tokensLeft"] for r in fetched.responses if r.endpoint == "/product"]
    assert lefts[0] < 0  # the response said so ...
    # ... and the next 40-token batch waited the overdraft back first: (40 - left) / 20 per minute
    assert client.virtual_clock().slept - before >= (40 - lefts[0]) / 20 * 60
    assert report.throttled == 0 and report.received_asins["products"] == len(fetched.universe)


def test_budget_cap_stops_and_reports_the_rest_missing() -> None:
    client = _client(token_budget=50)
    fetched = client.fetch_day("US", DAY)
    report = _report(fetched)
    assert client.tokens_spent <= 50
    assert client.simulator_app().state.keepa.tokens_consumed <= 50
    missing = report.missing_asins["products"]
    assert report.budget_capped == len(missing) > 0
    assert report.received_asins["products"] + len(missing) == len(fetched.universe)
    assert "budget" in report.stop_reason
    assert report.as_metadata()["budget_capped_asins"] == len(missing)
    # the budget is per run (per client until reset): a second day gets nothing more ...
    again = _report(client.fetch_day("US", DAY + timedelta(days=1)))
    assert again.received_asins["products"] < 25 and again.budget_capped > 0
    client.reset_budget()  # ... until a new run starts (Dagster: setup_for_execution)
    assert _report(client.fetch_day("US", DAY)).received_asins["products"] > 0


def test_budget_holds_when_charged_requests_come_back_unreadable(tmp_path: Path) -> None:
    # every 200 is cut mid-body after the server charged it: retries must not overspend
    (tmp_path / "US.txt").write_text("\n".join(_tracked()))
    client = _client(
        token_budget=100,
        malformed_rate=1.0,
        batch_size=20,
        universe_source="file",  # the fault would cut the unified universe page too
        tracked_asins_path=str(tmp_path / "{site}.txt"),
    )
    report = _report(client.fetch_day("US", DAY))
    assert client.simulator_app().state.keepa.tokens_consumed <= 100
    assert client.tokens_spent <= 100 and report.malformed > 0
    assert report.received_asins["products"] == 0 and report.failed_requests > 0
    assert len(report.missing_asins["products"]) == report.tracked_asins


def test_server_errors_and_timeouts_are_retried() -> None:
    # Retried by time (a 5 s budget), not by count: with a 50 ms timeout, a loaded machine building
    # the market for the first universe page used to exhaust 5 attempts and fail the test.
    client = _client(
        error_5xx_rate=0.3,
        timeout_rate=0.1,
        timeout_seconds=1.0,
        timeout=0.05,
        fault_seed=4,
        batch_size=10,
        retry_budget_s=5.0,
    )
    report = _report(client.fetch_day("DE", DAY))
    assert report.server_errors > 0 and report.retries >= report.server_errors
    assert report.received_asins["products"] == len(_tracked("DE"))
    assert report.failed_requests == 0


def test_file_universe_and_unknown_asins(tmp_path: Path) -> None:
    tracked = _tracked("UK")[:7]
    (tmp_path / "UK.txt").write_text("# tracked on Keepa\n" + "\n".join(tracked) + "\nB0NOTREAL1  # gone\n")
    client = _client(universe_source="file", tracked_asins_path=str(tmp_path / "{site}.txt"))
    fetched = client.fetch_day("UK", DAY, extra_asins=[tracked[0], tracked[1]])
    report = _report(fetched)
    assert fetched.universe == [*tracked, "B0NOTREAL1"]  # extras already tracked: no duplicates
    assert report.missing_asins["products"] == ["B0NOTREAL1"]
    assert all(r.endpoint == "/product" for r in fetched.responses)  # no unified call at all
    with pytest.raises(ValueError, match="tracked-ASIN list for DE not found"):
        client.fetch_day("DE", DAY)


def test_key_never_leaks(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # The production pattern: the key is a dg.EnvVar field, so config dumps show only its name.
    monkeypatch.setenv("KEEPA_API_KEY", SECRET)
    client = _client(
        api_key=dg.EnvVar("KEEPA_API_KEY"),
        error_5xx_rate=0.3,
        malformed_rate=0.3,
        fault_seed=2,
        max_attempts=2,
        batch_size=10,
    )
    with caplog.at_level(logging.DEBUG):
        fetched = client.fetch_day("US", DAY, progress=logging.getLogger("test").info)
    report = _report(fetched)
    assert report.failed_requests > 0  # some errors were recorded: their texts must be clean too
    texts = [repr(client), str(client), str(client.model_dump()), str(report), str(report.as_metadata())]
    for r in fetched.responses:
        texts += [str(r.params), r.body, r.error or "", repr(r)]
    texts.append(caplog.text)
    assert all(SECRET not in t for t in texts)
    assert "key=***" in caplog.text  # httpx's request log line was redacted, not silenced


def test_rejected_and_missing_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A resource that needs no key to be built (most sites use the unified API) ...
    client = KeepaClient(universe_source="file", tracked_asins_path=str(tmp_path / "{site}.txt"))
    (tmp_path / "US.txt").write_text("\n".join(_tracked()[:3]))
    with pytest.raises(KeepaMissingKeyError, match="KEEPA_API_KEY is not set"):
        client.fetch_day("US", DAY)

    # ... and a key the server refuses: HTTP 402 stops the fetch, and the message has no key
    app = create_app(
        Market(MarketConfig(sites=("US",), asins_per_site=N_ASINS)), keepa_keys={"other": KeepaPlan()}
    )

    class _Loopback(KeepaClient):
        def _transport(self) -> httpx.AsyncBaseTransport | None:
            return httpx.ASGITransport(app=app)

    monkeypatch.setenv("KEEPA_API_KEY", SECRET)
    loopback = _Loopback(
        base_url="http://keepa.loopback",
        api_key=dg.EnvVar("KEEPA_API_KEY"),  # resolved at fetch time, outside a Dagster run
        universe_source="file",
        tracked_asins_path=str(tmp_path / "{site}.txt"),
    )
    with pytest.raises(UpstreamError) as caught:
        loopback.fetch_day("US", DAY)
    assert caught.value.status == 402 and "access key rejected" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    with pytest.raises(ValueError, match="no Keepa domain"):
        loopback.fetch_day("XX", DAY)


def test_request_params_reach_back_to_the_partition_day() -> None:
    client = KeepaClient()
    ten_days_ago = datetime.now(UTC).date() - timedelta(days=10)
    params = client.request_params("UK", ten_days_ago, ["B0AAAAAAAA", "B0BBBBBBBB"])
    # Keepa's days counts back from now and keeps the last change before the window
    assert params["days"] == "12" and params["domain"] == "2" and params["asin"] == "B0AAAAAAAA,B0BBBBBBBB"
    assert "key" not in params
    assert client.cost_per_asin() == 2 and KeepaClient(buybox=True, rating=False).cost_per_asin() == 3


def test_project_status_follows_keepa_minute_refills() -> None:
    status = TokenStatus(tokens_left=-35, refill_in_ms=14_000, refill_rate_per_min=20)
    assert project_status(status, 10).tokens_left == -35  # before the first refill
    assert project_status(status, 10).refill_in_ms == 4_000
    after = project_status(status, 14 + 60 * 2 + 1)  # three refills
    assert after.tokens_left == -35 + 60 and after.refill_in_ms == 59_000
    assert project_status(status, 10 * 3600).tokens_left == 20 * 60  # an hour's worth at most


# -------------------------------------------------------------------------------------------- tokens


def test_token_status_with_negative_tokens_left() -> None:
    status = parse_token_status(_fixture("keepa_tokens_negative.json"))
    assert status == TokenStatus(
        tokens_left=-35, refill_in_ms=14000, refill_rate_per_min=20, timestamp_ms=1795240800000
    )
    # deficit = 100 - (-35) = 135 tokens at 20/min = 6.75 min, after the 14 s until the next refill.
    assert wait_seconds(status, 100) == pytest.approx(14 + 135 / 20 * 60)
    assert wait_seconds(status, -35) == 0.0


def test_token_status_enough_tokens_and_errors() -> None:
    status = parse_token_status(_fixture("keepa_product_us.json"))
    assert status.tokens_left == 1180 and wait_seconds(status, 100) == 0.0
    with pytest.raises(ValueError, match="refillRate"):
        parse_token_status({"tokensLeft": 1, "refillIn": 5})
    with pytest.raises(ValueError, match="never refill"):
        wait_seconds(TokenStatus(tokens_left=0, refill_in_ms=0, refill_rate_per_min=0), 1)


def _fixture(name: str) -> dict[str, Any]:
    path = Path(__file__).parent.parent / "core" / "fixtures" / name
    return json.loads(path.read_text(encoding="utf-8"))
