"""``asin-platform settings``: the effective settings, as the platform will use them (no secrets)."""

from __future__ import annotations

import argparse

from asin_platform.commands._runtime import cli_warehouse, effective_warehouse_url
from asin_platform.errors import UserError
from asin_platform.settings import Settings


def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    shown = settings.model_dump(mode="json")
    # The warehouse actually used (the environment variable wins) and never its credentials.
    _, origin = effective_warehouse_url(settings)
    try:
        described = cli_warehouse(settings).describe()
    except (ValueError, RuntimeError) as exc:  # the messages never carry the password
        raise UserError(f"the warehouse URL from {origin} is not usable: {exc}") from exc
    shown["warehouse_url"] = f"{described} (from {origin})"
    print(yaml.safe_dump(shown, sort_keys=False, width=1_000))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "settings", help="print the effective settings (the warehouse actually used; no secrets)"
    )
    p.set_defaults(func=cmd_settings)
