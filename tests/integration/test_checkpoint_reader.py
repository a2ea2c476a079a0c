"""plmscale.export.shards on layouts the export round trip does not cover: a ZeRO-3 checkpoint
(weights only in the optimizer partitions) reads as the same run saved with ZeRO-1, and a moved
checkpoint still generates: it carries its config and tokenizer."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from closeness import adam_movement_atol, assert_close
from harness import free_port, run_ranks

sys.path.insert(0, str(Path(__file__).parent))
import export_workers as workers  # noqa: E402

pytestmark = pytest.mark.slow


def test_zero3_reads_as_zero1_and_a_moved_checkpoint_generates(demo_shards, tmp_path, repo):
    shards = tmp_path / "shards"  # a copy, deleted before generating
    shutil.copytree(demo_shards, shards)
    rates = run_ranks(4, workers.train_zero_stages, str(shards), str(tmp_path), [1, 3])[0]
    zero1, zero3 = run_ranks(1, workers.read_checkpoints,
                             [str(tmp_path / "zero1"), str(tmp_path / "zero3")])[0]
    # The same training, ZeRO-3's weights rebuilt from its optimizer partitions.
    assert_close(zero3, zero1, "ZeRO-3 vs ZeRO-1", atol=adam_movement_atol(rates))
    # Elsewhere, with the training shards gone: config and tokenizer come from the checkpoint.
    shutil.rmtree(shards)
    moved = tmp_path / "elsewhere" / "ckpt"
    shutil.copytree(tmp_path / "zero3", moved)
    texts = []
    for directory in (moved, tmp_path / "zero1"):
        env = dict(os.environ, MASTER_PORT=str(free_port()), WORLD_SIZE="1", RANK="0",
                   LOCAL_RANK="0")
        out = subprocess.run([sys.executable, str(repo / "launch/generate.py"), "--checkpoint",
                              str(directory), "--prompt", "The castle", "--max-new-tokens", "6"],
                             capture_output=True, text=True, env=env, timeout=600,
                             cwd=tmp_path / "elsewhere")
        assert out.returncode == 0, out.stderr[-3000:]
        texts.append(out.stdout.strip().splitlines()[-1])
    assert texts[0] == texts[1] and texts[0].startswith("The castle"), texts
