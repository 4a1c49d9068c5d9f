"""Asset checks of every layer; each module exposes ``build_checks(settings, partitions_def)``."""

from __future__ import annotations

import dagster as dg

from asin_platform.checks import features, ingest, model, outcomes
from asin_platform.settings import Settings

__all__ = ["build_checks"]


def build_checks(
    settings: Settings, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """Every asset check, thresholds and paths bound from ``settings``."""
    return [
        *ingest.build_checks(settings, partitions_def),
        *features.build_checks(settings, partitions_def),
        *model.build_checks(settings, partitions_def),
        *outcomes.build_checks(settings, partitions_def),
    ]
