"""The word-input ELMo end to end: the launcher trains it data parallel (2 ranks, ZeRO-1) on the
bundled text and both LM losses fall by >= 30%; ``plmscale elmo export`` writes the embedder, whose
scalar mix embeds text, and ``plmscale elmo perplexity`` prints the perplexity of text it never
saw (a slice of another corpus, encoded with the same tokenizer)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import free_port

pytestmark = pytest.mark.slow

_CANDIDATES = [Path(__file__).resolve().parents[3] / "shared" / "corpora",
               Path("/work/shared/corpora")]


def held_out_text(tmp_path: Path) -> Path:
    """The first 60 kB of Tiny Shakespeare (shared corpus en_small.txt): plays, not the gothic
    novels of the training text."""
    source = next((p / "en_small.txt" for p in _CANDIDATES if (p / "en_small.txt").is_file()), None)
    if source is None:
        pytest.skip("shared corpus en_small.txt is not available")
    out = tmp_path / "held_out.txt"
    out.write_text(source.read_text(encoding="utf-8")[:60_000], encoding="utf-8")
    return out


def _run(args, env, repo, timeout=900):
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, cwd=repo)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_word_elmo_learns_exports_embeds_and_reports_held_out_perplexity(demo_shards, tmp_path,
                                                                          repo):
    save_dir, folder = tmp_path / "ckpt", tmp_path / "elmo"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(free_port()), str(repo / "launch/train.py"),
                "--config", str(repo / "configs/elmo_words_tiny.yaml"),
                "--set", f"data.path={demo_shards}", "--set", f"train.save_dir={save_dir}",
                "--set", "train.log_interval=1", "--set", "train.progress_bar=false",
                "--set", "train.train_steps=200"], env, repo)
    steps = {k: [float(m[1]) for m in re.finditer(rf"^step \d+: .*?\b{k}=([\d.]+)", out, re.M)]
             for k in ("forward_loss", "backward_loss", "loss")}
    assert len(steps["loss"]) == 200
    for name, losses in steps.items():  # mean of the last 10 steps against the first
        print(f"{name}: step 1 {losses[0]:.3f}, mean of the last 10 steps {sum(losses[-10:]) / 10:.3f}")
        assert sum(losses[-10:]) / 10 <= 0.7 * losses[0], (name, losses[::10])

    _run([sys.executable, "-m", "plmscale.cli", "elmo", "export", "--checkpoint", str(save_dir),
          "--output", str(folder)], env, repo)
    held_out = held_out_text(tmp_path)
    _run([sys.executable, "-m", "data_prep", "encode", "--input", str(held_out), "--tokenizer",
          str(demo_shards / ".." / "tokenizer.model"), "--output", str(tmp_path / "held_out"),
          "--workers", "1"], env, repo)
    printed = _run([sys.executable, "-m", "plmscale.cli", "elmo", "perplexity", "--model",
                    str(folder), "--data", str(tmp_path / "held_out"), "--seq-length", "32",
                    "--windows", "64"], env, repo)
    found = re.search(r"held-out perplexity: ([\d.]+) \(forward ([\d.]+), backward ([\d.]+); "
                      r"(\d+) tokens", printed)
    assert found, printed
    mean, forward, backward, tokens = map(float, found.groups())
    print(printed.strip())
    # Untrained, the model is uniform over 8000 pieces; trained on other text it must do far better.
    assert int(tokens) > 1500 and 1 < mean < 0.25 * 8000 and forward > 1 and backward > 1

    embedded = _run([sys.executable, "-c", (
        "import sys, torch; from plmscale.families.elmo.embed import Elmo\n"
        "elmo = Elmo(sys.argv[1]); text = 'The castle stood upon the hill.'\n"
        "layers, = elmo.layers([text]); mixed, = elmo.embed([text])\n"
        "n = len(elmo.sp.encode(text)); assert layers.shape == (3, n, 256), layers.shape\n"
        "assert torch.allclose(mixed, layers.mean(0)); assert torch.equal(layers[0, :, :128], "
        "layers[0, :, 128:])\nprint('embedded', tuple(mixed.shape))"), str(folder)], env, repo)
    assert "embedded (" in embedded
