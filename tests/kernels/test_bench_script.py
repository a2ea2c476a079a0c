"""CPU checks of bench/kernels.py's pure parts (the timing itself needs a GPU)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "kernels.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_write_section_replaces_only_its_own(bench, tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## Training step\n\nkeep me\n")
    bench.write_section(path, "first")
    bench.write_section(path, "second")
    text = path.read_text()
    assert "keep me" in text and "second" in text and "first" not in text
    assert text.count(bench.SECTION) == 1
    path.write_text(f"# R\n\n{bench.SECTION}\n\nold\n\n## Later\n\nstays\n")
    bench.write_section(path, "new")
    text = path.read_text()
    assert "old" not in text and "new" in text and "## Later\n\nstays" in text


def test_rows_render(bench):
    row = bench.Row("softmax causal fwd", "1x2x3x4", nbytes=2_000_000, fused_ms=1.0, eager_ms=3.0)
    cells = row.cells(copy_gbs=2.5)
    assert cells[3] == "2" and cells[4] == "0.80" and cells[7] == "3.00x" and cells[8] == "-"
    assert bench.markdown([row], 2.5).count("\n") == 2
