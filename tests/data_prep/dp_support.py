"""Helpers shared by the data_prep tests (a uniquely named module: other test folders
have their own conftest.py, so ``from conftest import`` would be ambiguous)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# CI has shared/ beside the checkout; on the dev box it is /work/shared.
_CANDIDATES = [REPO.parent / "shared" / "corpora", Path("/work/shared/corpora")]
CORPORA = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
SEP = "<|endoftext|>"


def corpus_path(name: str) -> Path:
    path = CORPORA / name
    if not path.is_file():
        pytest.skip(f"shared corpus {path} is not available")
    return path


def run_data_prep(*args: str, env: dict | None = None, check: bool = True, timeout: float = 120):
    """Run ``python -m data_prep ARGS`` from the repo root; returns CompletedProcess."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "data_prep", *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"data_prep {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc
