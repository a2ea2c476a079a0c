"""plmscale.perf FLOPs: the PTD-P formula for GPT configs, torch's FlopCounterMode on a tiny model
of every family (forward + backward), and published throughput figures turned into MFU."""

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from plmscale.config import load_config
from plmscale.families import build_model
from plmscale.parallel import init_model_parallel, initialize_parameters
from plmscale.perf import describe, mfu, padded_vocab, ptdp_flops, ptdp_parameters, step_flops

pytestmark = pytest.mark.usefixtures("single_rank")

BATCH, SEQ, PREDICTED, DECODER = 2, 32, 8, 12


@pytest.mark.parametrize("preset", ["gpt-tiny", "gpt2", "gpt2-medium", "gpt2-xl"])
@pytest.mark.parametrize("recompute", [False, True])
def test_gpt_flops_equal_the_ptdp_formula(preset, recompute):
    cfg = load_config(None, [f"model.preset={preset}", "data.seq_length=256",
                             "train.micro_batch_size=3", "train.gradient_accumulation_steps=2"])
    m = cfg.model
    flops = step_flops(cfg, data_parallel_size=4, recompute=recompute)
    expected = ptdp_flops(24, 256, m.num_layers, m.hidden_size, padded_vocab(m, 1), recompute)
    assert (flops.hardware_per_sequence if recompute else flops.per_sequence) * 24 \
        == pytest.approx(expected, rel=1e-12)
    assert flops.per_step == pytest.approx(ptdp_flops(24, 256, m.num_layers, m.hidden_size,
                                                      padded_vocab(m, 1)), rel=1e-12)


def _labels(ids, count):
    """Exactly ``count`` labelled positions per row (the rest -100)."""
    labels = torch.full_like(ids, -100)
    labels[:, 1:1 + count] = ids[:, 1:1 + count]
    return labels


def _batch(family, vocab):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (BATCH, SEQ), generator=g)
    ones = torch.ones_like(ids)
    if family in ("gpt", "llama"):
        return {"input_ids": ids, "labels": torch.roll(ids, -1, 1)}
    if family in ("t5", "bart"):
        dec = torch.randint(5, vocab, (BATCH, DECODER), generator=g)
        return {"input_ids": ids, "attention_mask": ones, "decoder_input_ids": dec,
                "decoder_attention_mask": torch.ones_like(dec), "labels": dec}
    batch = {"input_ids": ids, "attention_mask": ones, "mlm_labels": _labels(ids, PREDICTED)}
    if family in ("bert", "albert", "electra"):
        batch["token_type_ids"] = torch.zeros_like(ids)
    if family == "bert":
        batch["next_sentence_label"] = torch.tensor([0, 1])
    if family == "albert":
        batch["sentence_order_label"] = torch.tensor([0, 1])
    return batch


FAMILY_PRESETS = ["bert-tiny", "roberta-tiny", "albert-tiny", "electra-tiny", "distilbert-tiny",
                  "gpt-tiny", "t5-tiny", "bart-tiny", "llama-tiny"]


@pytest.mark.parametrize("preset", FAMILY_PRESETS)
def test_flops_match_torch_flop_counter_for_every_family(preset):
    cfg = load_config(None, [f"model.preset={preset}", f"data.seq_length={SEQ}",
                             f"data.decoder_seq_length={DECODER}", f"train.micro_batch_size={BATCH}",
                             f"objective.mlm_probability={PREDICTED / SEQ}",
                             "objective.sentence_order_prediction=true",
                             # Plain matmuls: the model's FLOPs. SDPA's CPU backward with a mask
                             # recomputes part of the forward, which the counter sees as extra.
                             "model.attention_backend=reference"])
    init_model_parallel(cfg)
    model = build_model(cfg)
    initialize_parameters(model, 0, 0.02, cfg.model.vocab_size)
    if cfg.model.family == "distilbert":  # the frozen teacher: a BERT of twice the depth
        teacher_cfg = dataclasses.replace(cfg, model=dataclasses.replace(
            cfg.model, family="bert", num_layers=2 * cfg.model.num_layers, type_vocab_size=2))
        teacher = build_model(teacher_cfg)
        initialize_parameters(teacher, 1, 0.02, cfg.model.vocab_size)
        model.set_teacher(teacher)
    batch = _batch(cfg.model.family, cfg.model.vocab_size)
    with FlopCounterMode(display=False) as counter:
        model(batch)["loss"].backward()
    predicted = step_flops(cfg).per_step
    assert predicted == pytest.approx(counter.get_total_flops(), rel=0.02), preset


def test_encoder_decoder_lengths_are_separate():
    cfg = load_config(None, ["model.preset=t5-tiny", "data.seq_length=64",
                             "data.decoder_seq_length=16"])
    shape = describe(cfg)
    assert [(s.seq, s.memory) for s in shape.stacks] == [(64, 0), (16, 64)]
    longer = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, decoder_seq_length=32))
    assert step_flops(longer).per_sequence > step_flops(cfg).per_sequence


def test_moe_counts_active_experts_only():
    """The MoE fields of the config are read: FFN FLOPs scale with the router's top-k (at the
    experts' own width, plus the router and the shared expert with its gate), not with the number of
    experts, and only on the layers with experts; parameters with the number of experts."""
    base = ["model.preset=gpt-tiny", "data.seq_length=64"]
    dense = describe(load_config(None, base)).stacks[0]
    cfg = load_config(None, base + ["model.num_experts=8", "model.moe_top_k=3",
                                    "model.moe_ffn_hidden_size=128", "model.moe_shared_experts=1",
                                    "model.moe_shared_expert_gate=true", "model.num_layers=4",
                                    "model.moe_layer_frequency=2"])
    moe = describe(cfg).stacks[0]
    assert (moe.moe_experts, moe.moe_topk, moe.moe_ffn, moe.moe_shared_ffn, moe.moe_layers) == (8, 3, 128, 128, 2)
    h, f, s, g = dense.hidden, dense.ffn, dense.seq, 128
    per_layer = dense.forward_flops() / dense.layers
    mlp = 2 * s * h * f * 2
    moe_mlp = 2 * s * h * g * 2 * (3 + 1) + 2 * s * h * (8 + 1)
    assert moe.forward_flops() == 4 * per_layer + 2 * (moe_mlp - mlp)
    # One MoE layer on one of 2 expert-parallel ranks: 4 experts + the shared one, router, gate.
    assert moe.layer_params(1, ep=2, moe=True) - dense.layer_params(1) == \
        4 * (2 * h * g + g + h) + (2 * h * g + g + h) - (2 * h * f + f + h) + 8 * h + h
    assert moe.layer_params(1, moe=False) == dense.layer_params(1)


# Narayanan et al. 2021 (PTD-P), Table 1 — also the table of Megatron-LM's README of April 2021
# ("GPT models from 1 billion all the way to 1 trillion parameters ... vocabulary size of 51,200
# and a sequence length of 2048 ... up to 3072 A100 GPUs"): parameters (billions), heads, hidden,
# layers, TP, PP, GPUs, batch, achieved teraFLOP/s per GPU, percentage of the 312 TFLOP/s peak,
# aggregate petaFLOP/s. Those FLOPs include the recomputed forward (eq. 3, 96·...).
PTDP_TABLE_1 = [
    (1.7, 24, 2304, 24, 1, 1, 32, 512, 137, 44, 4.4),
    (3.6, 32, 3072, 30, 2, 1, 64, 512, 138, 44, 8.8),
    (7.5, 32, 4096, 36, 4, 1, 128, 512, 142, 46, 18.2),
    (18.4, 48, 6144, 40, 8, 1, 256, 1024, 135, 43, 34.6),
    (39.1, 64, 8192, 48, 8, 2, 512, 1536, 138, 44, 70.8),
    (76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140, 45, 143.8),
    (145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148, 47, 227.1),
    (310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155, 50, 297.4),
    (529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163, 52, 410.2),
    (1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163, 52, 502.0),
]


@pytest.mark.parametrize("row", PTDP_TABLE_1, ids=[f"{r[0]}B" for r in PTDP_TABLE_1])
def test_megatron_table_rows_reproduce(row):
    """From each row's configuration and reported throughput: its parameter count, its percentage
    of peak (the hardware-FLOPs utilisation), its aggregate rate; and the model FLOPs utilisation
    that follows (without the recomputed forward), which plmscale's step_flops gives for a GPT of
    that shape."""
    params, heads, hidden, layers, tp, pp, gpus, batch, tflops, percent, aggregate = row
    from plmscale.perf import GPUS
    peak = GPUS["A100"].peak("bf16")
    assert ptdp_parameters(layers, hidden, 51200, 2048) / 1e9 == pytest.approx(params, abs=0.051)
    hardware = ptdp_flops(batch, 2048, layers, hidden, 51200, recompute=True)
    step_seconds = hardware / (tflops * 1e12 * gpus)  # the iteration time the row implies
    assert round(100 * mfu(hardware, step_seconds, gpus, peak)) == percent
    # per-GPU figures are rounded to 1 TFLOP/s: the aggregate agrees within that rounding
    assert tflops * gpus / 1000 == pytest.approx(aggregate, abs=0.5 * gpus / 1000 + 0.05)
    cfg = load_config(None, ["model.preset=gpt2", f"model.num_layers={layers}",
                             f"model.hidden_size={hidden}", f"model.num_attention_heads={heads}",
                             f"model.ffn_hidden_size={4 * hidden}", "model.vocab_size=51200",
                             "model.max_position_embeddings=2048", "data.seq_length=2048",
                             f"train.micro_batch_size={batch}"])
    model_flops = step_flops(cfg).per_step
    assert model_flops == pytest.approx(ptdp_flops(batch, 2048, layers, hidden, 51200), rel=1e-12)
    model_mfu = mfu(model_flops, step_seconds, gpus, peak)
    # MFU = the row's utilisation x 72(1 + s/6h + V/12lh) / 96(1 + s/6h + V/16lh): ~0.75 of it.
    ratio = ptdp_flops(1, 2048, layers, hidden, 51200) / hardware * batch
    assert model_mfu == pytest.approx(tflops * 1e12 / peak * ratio, rel=1e-9)
    assert 0.74 < ratio < 0.77


# NVIDIA NeMo performance summary (docs/source/performance/performance_summary.md, NeMo 24.07,
# DGX-H100, Megatron-core GPT-3 models, sequence length 2048): reported tokens/s per GPU and model
# TFLOP/s per GPU. The model FLOPs from the configuration turn the first into the second.
NEMO_GPT3 = [("GPT3-5B", 24, 4096, 32, 23574, 770), ("GPT3-20B", 44, 6144, 48, 5894, 755),
             ("GPT3-175B", 96, 12288, 96, 745, 802)]


@pytest.mark.parametrize("row", NEMO_GPT3, ids=[r[0] for r in NEMO_GPT3])
def test_nemo_tokens_per_second_give_their_model_tflops(row):
    _, layers, hidden, heads, tokens_per_gpu, tflops = row
    cfg = load_config(None, ["model.preset=gpt2", f"model.num_layers={layers}",
                             f"model.hidden_size={hidden}", f"model.num_attention_heads={heads}",
                             f"model.ffn_hidden_size={4 * hidden}", "model.vocab_size=50257",
                             "model.max_position_embeddings=2048", "data.seq_length=2048"])
    per_token = step_flops(cfg).per_token
    assert per_token * tokens_per_gpu / 1e12 == pytest.approx(tflops, abs=0.6)
