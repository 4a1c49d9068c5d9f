"""Small line plots for the UI's metadata (PNG in Markdown: the UI renders it inline)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg


def line_plot_png(
    panels: Sequence[tuple[str, Mapping[str, tuple[Sequence[Any], Sequence[Any]]]]],
    title: str,
    *,
    log_invert: Sequence[bool] = (),
) -> bytes:
    """One panel per ``(y label, {series name: (x, y)})``, stacked; ``log_invert[i]`` draws panel i
    on an inverted log axis (a rank: lower is better)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels) + 0.6), dpi=80, squeeze=False)
    for i, (ylabel, series) in enumerate(panels):
        ax = axes[i][0]
        for name, (x, y) in series.items():
            ax.plot(list(x), list(y), label=name, linewidth=1.2, marker="." if len(x) < 40 else None)
        if i < len(log_invert) and log_invert[i]:
            ax.set_yscale("log")
            ax.invert_yaxis()
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_title(title, fontsize=9)
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    """A PNG as a Markdown metadata value the UI shows inline."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")
