"""Where runs keep what a later run needs (issue 15): the artifact store addressed by URL
(``store``), the model registry in the warehouse (``registry``) and Optuna's shared database
(``tuning_db``). Nothing here imports Dagster; the assets and the CLI call it."""

from asin_platform.storage.registry import (
    NoModelError,
    RegisteredModel,
    find_model,
    load_registered,
    promote_model,
    register_model,
    registry,
)
from asin_platform.storage.store import (
    ArtifactStore,
    artifacts_store,
    as_url,
    exports_store,
    read_bytes,
    read_frame,
    shown,
    write_bytes,
)

__all__ = [
    "ArtifactStore",
    "NoModelError",
    "RegisteredModel",
    "artifacts_store",
    "as_url",
    "exports_store",
    "find_model",
    "load_registered",
    "promote_model",
    "read_bytes",
    "read_frame",
    "register_model",
    "registry",
    "shown",
    "write_bytes",
]
