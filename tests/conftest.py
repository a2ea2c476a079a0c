"""Shared test set-up: markers, the repository paths, and quiet megatron-core imports."""

import sys
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(Path(__file__).parent))  # for tests/harness.py


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (run with `pytest -m gpu`)")
    config.addinivalue_line("markers", "slow: multi-process or training runs")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory) -> Path:
    """Tokenizer + Arrow shards of the bundled demo corpus, made once per test session through the
    real data_prep command line."""
    import subprocess
    out = tmp_path_factory.mktemp("demo_data")
    corpus = REPO / "corpora" / "gothic_novels.txt"
    common = ["--input", str(corpus), "--doc-separator", "<|endoftext|>"]
    subprocess.run([sys.executable, "-m", "data_prep", "train-tokenizer", *common, "--output",
                    str(out / "tokenizer.model"), "--vocab-size", "8000"], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "data_prep", "encode", *common, "--tokenizer",
                    str(out / "tokenizer.model"), "--output", str(out / "shards"), "--workers", "2"],
                   check=True, capture_output=True)
    return out / "shards"


@pytest.fixture(scope="session")
def second_source(demo_shards, tmp_path_factory) -> Path:
    """A second shard directory with the demo tokenizer (a mixture's other source): three
    documents cut from the end of the demo corpus."""
    import subprocess
    out = tmp_path_factory.mktemp("second_source")
    text = (REPO / "corpora" / "gothic_novels.txt").read_text()[-90_000:]
    (out / "docs.txt").write_text("\n<|endoftext|>\n".join(text[i:i + 30_000]
                                                       for i in (0, 30_000, 60_000)))
    subprocess.run([sys.executable, "-m", "data_prep", "encode", "--input", str(out / "docs.txt"),
                    "--doc-separator", "<|endoftext|>", "--tokenizer",
                    str(demo_shards / "tokenizer.model"), "--output", str(out / "shards"),
                    "--workers", "1"], check=True, capture_output=True)
    return out / "shards"
