"""MFU, TFLOP/s per device and memory per rank in the training log and TensorBoard."""

import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from plmscale.config import ConfigError, load_config, validate_config
from plmscale.training.metrics import MetricsLogger, max_over_ranks, peak_memory_bytes

pytestmark = pytest.mark.usefixtures("single_rank")


def test_logger_reports_mfu_tflops_and_memory(tmp_path, capsys):
    logger = MetricsLogger(2, 0, str(tmp_path), progress_bar=False, log_interval=1,
                           flops_per_step=4e12, peak_flops=100e12)
    start = time.perf_counter()
    logger._last = start
    time.sleep(0.2)
    memory = max_over_ranks(peak_memory_bytes())
    metrics = logger.step(1, {"loss": 1.0}, tokens=1000, memory_bytes=memory)
    elapsed = time.perf_counter() - start
    logger.close()
    # one device: 4e12 FLOPs in ~0.2 s = ~20 TFLOP/s = ~20% of a 100 TFLOP/s peak
    assert 4 / elapsed <= metrics["tflops_per_device"] <= 4 / 0.2
    assert metrics["mfu"] == pytest.approx(metrics["tflops_per_device"] / 100)
    assert metrics["memory_gib_per_rank"] == pytest.approx(memory / 2**30)
    assert 0.05 < metrics["memory_gib_per_rank"] < 64  # this process's RSS, not a made-up figure
    assert "mfu=" in capsys.readouterr().out
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"train/mfu", "train/tflops_per_device", "train/memory_gib_per_rank"} <= set(
        events.Tags()["scalars"])


def test_no_mfu_without_a_peak():
    logger = MetricsLogger(1, 0, None, progress_bar=False, log_interval=1, flops_per_step=1e9)
    metrics = logger.step(1, {"loss": 1.0}, tokens=10)
    assert "tflops_per_device" in metrics and "mfu" not in metrics


def test_peak_tflops_must_be_positive():
    cfg = load_config(None, ["train.peak_tflops=0"])
    with pytest.raises(ConfigError, match="train.peak_tflops"):
        validate_config(cfg, 1)
