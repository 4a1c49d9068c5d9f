"""Slack-compatible alert bodies: ``{"text": fallback, "blocks": [...]}``.

``text`` is what notifications and non-Slack receivers show, so it carries the essentials and the
link on its own; ``blocks`` lay the same facts out for Slack (header, fields, details, links). Slack's
limits are respected (header 150 chars, field 2000, section 3000) by truncating, never by failing.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

SEVERITY_ICON = {
    "ERROR": ":rotating_light:",
    "WARN": ":warning:",
    "INFO": ":chart_with_upwards_trend:",
    "RESOLVED": ":white_check_mark:",
}
_HEADER_MAX = 150
_FIELD_MAX = 1900
_SECTION_MAX = 2900


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_url(base: str, run_id: str) -> str:
    return f"{base}/runs/{run_id}"


def asset_url(
    base: str, asset_path: Sequence[str], *, view: str | None = None, partition: str | None = None
) -> str:
    url = f"{base}/assets/{'/'.join(quote(p, safe='') for p in asset_path)}"
    params = [f"view={view}"] if view else []
    if partition:
        params.append(f"partition={quote(partition, safe='')}")
    return url + ("?" + "&".join(params) if params else "")


def render_value(value: Any, limit: int = 400) -> str:
    """A metadata value as short text (MetadataValue objects carry theirs in ``.value``)."""
    raw = getattr(value, "value", value)
    if isinstance(raw, dict | list):
        text = json.dumps(raw, default=str, separators=(",", ":"), sort_keys=True)
    elif isinstance(raw, float):
        text = f"{raw:.4g}"
    else:
        text = str(raw)
    return _cut(text.strip(), limit)


def render_metadata(metadata: Mapping[str, Any], limit: int = _SECTION_MAX - 10) -> str:
    """``key: value`` lines, most useful first: scalars before tables and JSON blobs."""

    def weight(item: tuple[str, Any]) -> int:
        raw = getattr(item[1], "value", item[1])
        return 1 if isinstance(raw, dict | list) or (isinstance(raw, str) and "\n" in raw) else 0

    lines = [f"{k}: {render_value(v)}" for k, v in sorted(metadata.items(), key=weight)]
    return _cut("\n".join(lines), limit)


def slack_message(
    title: str,
    *,
    severity: str,
    fields: Mapping[str, str | None],
    details: str | None = None,
    links: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """One alert. ``fields`` with a None value are left out; ``details`` goes in a code block."""
    icon = SEVERITY_ICON.get(severity, ":bell:")
    shown = {k: v for k, v in fields.items() if v not in (None, "")}
    facts = ", ".join(f"{k.lower()}={v}" for k, v in shown.items())
    text = f"{icon} [{severity}] {title}" + (f" | {facts}" if facts else "")
    if links:
        text += " | " + " ".join(f"{label}: {url}" for label, url in links)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"[{severity}] {title}", _HEADER_MAX)}}
    ]
    if shown:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": _cut(f"*{k}*\n{v}", _FIELD_MAX)}
                    for k, v in list(shown.items())[:10]
                ],
            }
        )
    if details:
        body = _cut(details.replace("```", "'''"), _SECTION_MAX - 8)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{body}```"}})
    if links:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": " | ".join(f"<{url}|{label}>" for label, url in links)}
                ],
            }
        )
    return {"text": _cut(text, 3000), "blocks": blocks}


def summary_message(kind: str, dropped: Sequence[str], ui_base_url: str) -> dict[str, Any]:
    """One message standing for the alerts over the per-tick cap (the log has each of them)."""
    listing = "\n".join(dropped[:40]) + (f"\n... and {len(dropped) - 40} more" if len(dropped) > 40 else "")
    return slack_message(
        f"{len(dropped)} more {kind} alerts this tick",
        severity="WARN",
        fields={"Kind": kind, "Count": str(len(dropped))},
        details=listing,
        links=[("Runs", f"{ui_base_url}/runs")],
    )
