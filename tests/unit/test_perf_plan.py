"""Communication volume, step-time estimate and the layout planner of plmscale.perf."""

import pytest

from plmscale.config import load_config, validate_config
from plmscale.perf import GPUS, Layout, gpu_profile, step_flops
from plmscale.perf.cli import main as plan_main
from plmscale.perf.comm import communication
from plmscale.perf.plan import plan, with_layout
from plmscale.perf.step_time import estimate_step


def _gpt(*overrides):
    return load_config(None, ["model.preset=gpt2", "data.seq_length=1024", "train.precision=bf16",
                              "train.micro_batch_size=4", *overrides])


def test_tensor_parallel_bytes_are_four_all_reduces_per_layer():
    """Megatron's count: 2 all-reduces of [s, b, h] forward and 2 backward per layer (+ the
    embedding's and the logits'), each sending 2(t-1)/t of the buffer."""
    cfg = _gpt("train.gradient_accumulation_steps=3")
    m, s, b = cfg.model, 1024, 4
    comm = communication(cfg, Layout(tp=4))
    buffer = s * b * m.hidden_size * 2
    assert comm.tensor_parallel == pytest.approx(3 * (4 * m.num_layers + 2) * buffer * 2 * 3 / 4)
    assert comm.pipeline == comm.data_parallel == 0
    dp = communication(cfg, Layout(dp=8, zero_stage=1))
    params = 124_439_808 + (50304 - 50257) * 768  # HF count + the padding rows, reduced too
    assert dp.data_parallel == pytest.approx(2 * 7 / 8 * params * 2)
    assert communication(cfg, Layout(dp=8, zero_stage=3)).data_parallel > dp.data_parallel


def test_step_estimate_is_bounded_by_the_peak():
    cfg = _gpt("train.gradient_accumulation_steps=8")
    h100 = gpu_profile("h100")
    single = estimate_step(cfg, Layout(), h100, efficiency=0.5)
    flops = step_flops(cfg).per_step
    assert single.compute == pytest.approx(flops / (0.5 * 989e12))
    assert single.mfu < 0.5 and single.step_seconds > single.compute
    piped = estimate_step(with_layout(cfg, Layout(pp=4), 8), Layout(pp=4), h100, efficiency=0.5)
    assert piped.bubble == pytest.approx(3 / 8 * piped.compute)


def test_planner_ranks_fitting_layouts_by_throughput():
    # fused-softmax keeps the [s, s] probabilities (SDPA would not): some layouts then overflow.
    cfg = load_config(None, ["model.preset=gpt2-xl", "data.seq_length=1024",
                             "train.precision=bf16", "train.micro_batch_size=8",
                             "model.attention_backend=fused-softmax"])
    plans = plan(cfg, GPUS["A100"], nodes=2, global_batch=256)
    assert plans and plans[0].fits
    fitting = [p for p in plans if p.fits]
    speeds = [p.estimate.tokens_per_second for p in fitting]
    assert speeds == sorted(speeds, reverse=True)
    assert any(not p.fits for p in plans)  # some layouts (no ZeRO, no recomputation) do not fit
    for p in plans:  # every plan is a layout the engine's validation accepts, batch preserved
        laid = with_layout(cfg, p.layout, p.accumulation)
        validate_config(laid, 16)
        assert p.layout.dp * p.accumulation * 8 == 256


def test_plan_command_prints_a_table(capsys):
    assert plan_main(["--config", "configs/gpt2.yaml", "--gpu", "H200", "--nodes", "1",
                      "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "8 x H200" in out and out.count("\n") == 5
    assert plan_main(["--config", "configs/gpt2.yaml", "--gpu", "V100"]) == 2
    assert "unknown GPU profile 'V100'; known: A100, H100, H200" in capsys.readouterr().err
