"""benchmarks/model_quality.py --write-docs replaces only the generated part of docs/model_quality.md:
the hand-written sections from its marker comment on survive a regeneration."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "model_quality.py"


@pytest.fixture(scope="module")
def model_quality():
    spec = importlib.util.spec_from_file_location("model_quality_under_test", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_splice_keeps_the_hand_written_sections(model_quality):
    marker = model_quality.HAND_WRITTEN_MARKER
    by_hand = f"{marker} (issue 14) -->\n\n## By hand\n\nkept text\n"
    existing = f"# Model quality\n\nold figures 0.71\n\n{by_hand}"
    generated = "# Model quality\n\nnew figures 0.80\n\n## Timings\n\n| a | 1 |\n"
    page = model_quality.splice_docs(generated, existing)
    assert page == f"{generated}\n{by_hand}"
    assert "old figures" not in page
    # regenerating again changes nothing more: the splice is idempotent
    assert model_quality.splice_docs(generated, page) == page


def test_splice_without_a_page_or_marker_writes_the_generated_part(model_quality):
    generated = "# Model quality\n\nfigures\n"
    assert model_quality.splice_docs(generated, None) == generated
    assert model_quality.splice_docs(generated, "# an old page without the marker\n") == generated


def test_the_docs_page_has_the_marker(model_quality):
    page = BENCHMARK.parent.parent / "docs" / "model_quality.md"
    assert model_quality.HAND_WRITTEN_MARKER in page.read_text()
