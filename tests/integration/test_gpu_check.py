"""bench/gpu_check.sh and its drivers must keep working between the rare GPU windows: the shell
script parses and runs its step/summary plumbing, the drivers parse their arguments, judge losses
and name GPUs right, and (slow) one CPU step of each driver runs end to end."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"
# Appended, not prepended: bench/data_prep.py must not shadow the data_prep package.
sys.path.append(str(REPO / "bench"))
gpu_common = importlib.import_module("gpu_common")
gpu_smoke = importlib.import_module("gpu_smoke")
gpu_throughput = importlib.import_module("gpu_throughput")


def test_script_parses_and_rejects_a_missing_log_directory():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    usage = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: bash bench/gpu_check.sh LOGDIR" in usage.stderr


def test_spent_budget_skips_every_step_and_still_writes_the_summary(tmp_path):
    # Figures a driver left behind are gathered into the summary; missing ones are named.
    (tmp_path / "kernels.md").write_text("# Benchmark results\n\n## Fused kernels (bench/kernels.py)"
                                         "\n\nMeasured on X\n\n| case |\n")
    (tmp_path / "throughput.json").write_text(json.dumps({"markdown": "THROUGHPUT TABLE"}))
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path), "--cpu-dry-run"], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "GPU_CHECK_BUDGET_S": "0",
                                          "PYTHON": sys.executable})
    assert done.returncode == 1, done.stdout + done.stderr
    steps = [line.split("\t") for line in (tmp_path / "steps.tsv").read_text().splitlines()[1:]]
    # The two builds run side by side, so their lines may come in either order.
    assert sorted(s[0] for s in steps) == sorted([
        "wheels", "environment", "build_kernels", "build_fused_adam", "data", "pytest_gpu",
        "throughput", "smoke", "smoke_bf16_cpu", "kernels_bench", "train_cli"])
    assert len(steps) == 11 and all(s[1].startswith("not run: the 0 s budget") for s in steps)
    summary = (tmp_path / "summary.md").read_text()
    assert "CPU DRY RUN" in summary and "| train_cli | not run" in summary
    assert "THROUGHPUT TABLE" in summary and "(no smoke.json: see the log)" in summary
    assert "Measured on X\n\n| case |" in summary and "## Fused kernels (bench" not in summary


def test_driver_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "keep")  # restored after parse() blanks it
    out = ["--data", "d", "--out", str(tmp_path / "o.json")]
    args = gpu_smoke.parse_args([*out, "--cpu-dry-run", "--steps", "9"])
    assert args.cpu_dry_run and args.steps == 2 and args.families[:2] == ["bert", "distilbert"]
    with pytest.raises(SystemExit):
        gpu_smoke.parse_args([*out, "--families", "distilbert"])  # its teacher is BERT's run
    monkeypatch.setenv(gpu_common.CPU_ENV, "1")
    args = gpu_throughput.parse_args([*out, "--cases", "bert-large-128"])
    assert args.cpu_dry_run and (args.warmup, args.steps) == (1, 2)
    sets = gpu_throughput.case_overrides(args, "bert-large-128", True, 2)
    assert "model.preset=bert-large" in sets and "model.use_fused_kernels=false" in sets


@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
                                        ("NVIDIA H200", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0),
                                        ("Tesla T4", None)])
def test_peak_table(name, peak):
    assert gpu_common.peak_bf16_tflops(name) == peak


def test_loss_comparison():
    ref = {"losses": [9.0, 8.0]}
    assert gpu_smoke.compare({"losses": [9.05, 8.1]}, ref, 2e-2, 2e-2)[0] == "PASS"
    assert gpu_smoke.compare({"losses": [9.0, 8.5]}, ref, 2e-2, 2e-2)[0] == "FAIL"
    assert gpu_smoke.compare({"losses": [9.0, math.nan]}, ref, 2e-2, 2e-2)[0] == "FAIL"
    assert gpu_smoke.compare({"losses": [9.0]}, ref, 2e-2, 2e-2)[0] == "FAIL"
    assert gpu_smoke.compare({"error": "RuntimeError: x"}, ref, 2e-2, 2e-2) == ("ERROR", None)


@pytest.mark.slow
def test_one_cpu_step_of_each_driver(demo_shards, tmp_path):
    # Both drivers in one process: one interpreter start and one deepspeed import, not two.
    common = ["--cpu-dry-run", "--data", str(demo_shards)]
    smoke_argv = [*common, "--families", "gpt", "--out", str(tmp_path / "smoke.json")]
    throughput_argv = [*common, "--cases", "gpt2-medium-1024", "--out", str(tmp_path / "throughput.json")]
    code = (f"import sys; sys.path.append('bench'); import gpu_smoke, gpu_throughput; "
            f"sys.exit(gpu_smoke.main({smoke_argv!r}) or gpu_throughput.main({throughput_argv!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    smoke = json.loads((tmp_path / "smoke.json").read_text())["rows"][0]
    # On CPU both runs take the reference path from the same seed: identical losses.
    assert smoke["verdict"] == "PASS" and smoke["fused"]["losses"] == smoke["reference"]["losses"]
    row = json.loads((tmp_path / "throughput.json").read_text())["rows"][0]
    assert row["tokens_per_s"] > 0 and row["mfu"] is None and math.isfinite(row["last_loss"])
    # MFU's numerator: FlopCounterMode must see forward AND backward, i.e. 6 FLOPs per matmul
    # parameter per token plus attention (2 layers, hidden 64, FFN 256, vocab 50257, seq 64, batch 2).
    layers, h, ffn, vocab, seq, batch = 2, 64, 256, 50257, 64, 2
    matmul_params = layers * (4 * h * h + 2 * h * ffn) + vocab * h
    expected = 6 * matmul_params * batch * seq + 3 * layers * 4 * batch * seq * seq * h
    assert row["flops_per_step"] == pytest.approx(expected, rel=0.01)
