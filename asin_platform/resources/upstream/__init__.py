"""Upstream clients: one interface, one HTTP core, one module per source.

- ``base``: the interface the assets see (``UpstreamClient``, ``DayFetch``, ``FetchReport``,
  ``RawResponse``, errors);
- ``http``: the one HTTP core (rate limiting, retries within a time budget, counters, paging, secret
  scrubbing, the sync runner) every source uses; ``ratelimit``: its token bucket;
- ``unified`` / ``keepa``: the sources (endpoints and formats only); ``keepa_tokens``: Keepa's token
  accounting;
- ``router``: which source fetches which site, and building the clients from settings.

Simulated clients (test doubles) live in ``asin_platform.simulator.clients``.
"""

from asin_platform.resources.upstream.base import (
    BATCH_KINDS,
    COVERAGE_KINDS,
    DayFetch,
    FailedRequest,
    FetchReport,
    MissingSecretError,
    RawResponse,
    SourcedResponse,
    UpstreamClient,
    UpstreamError,
    UpstreamUnreachable,
)
from asin_platform.resources.upstream.http import RetryPolicy, backoff_delay
from asin_platform.resources.upstream.keepa import (
    KEEPA_API_KEY_ENV,
    KeepaClient,
    KeepaFetchReport,
    KeepaMissingKeyError,
)
from asin_platform.resources.upstream.router import build_upstream_resources, fetch_partitions
from asin_platform.resources.upstream.unified import (
    BATCH_ENDPOINTS,
    KEYWORDS,
    PRODUCTS,
    REVIEWS,
    TIMESERIES,
    TOKEN_ENV,
    UNIVERSE,
    UnifiedApiClient,
)

__all__ = [
    "BATCH_ENDPOINTS",
    "BATCH_KINDS",
    "COVERAGE_KINDS",
    "KEEPA_API_KEY_ENV",
    "KEYWORDS",
    "PRODUCTS",
    "REVIEWS",
    "TIMESERIES",
    "TOKEN_ENV",
    "UNIVERSE",
    "DayFetch",
    "FailedRequest",
    "FetchReport",
    "KeepaClient",
    "KeepaFetchReport",
    "KeepaMissingKeyError",
    "MissingSecretError",
    "RawResponse",
    "RetryPolicy",
    "SourcedResponse",
    "UnifiedApiClient",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamUnreachable",
    "backoff_delay",
    "build_upstream_resources",
    "fetch_partitions",
]
