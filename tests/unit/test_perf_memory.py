"""plmscale.perf memory: parameter tensors per rank from the config against the built model of
every family, ZeRO model-state accounting against DeepSpeed's and Megatron's published figures,
and the activation estimate against the tensors autograd actually saves."""

import pytest
import torch

from plmscale.config import load_config
from plmscale.families import build_model
from plmscale.parallel import init_model_parallel, initialize_parameters
from plmscale.perf import Layout, activation_bytes, model_states, stage_tensors
from plmscale.perf.memory import deepspeed_zero2_gpu_bytes, megatron_bytes_per_parameter

pytestmark = pytest.mark.usefixtures("single_rank")

PRESETS = ["bert-tiny", "roberta-tiny", "albert-tiny", "electra-tiny", "distilbert-tiny", "gpt-tiny",
           "t5-tiny", "bart-tiny", "bert-base", "gpt2", "t5-v1_1-base", "albert-base", "bart-base",
           "ernie-2.0-tiny", "elmo-words-tiny", "elmo-original", "llama-tiny", "tinyllama-1.1b",
           "llama-2-7b", "mixtral-tiny", "qwen2-moe-tiny", "switch-tiny"]


@pytest.mark.parametrize("preset", PRESETS)
def test_parameter_tensors_match_the_built_model(preset):
    """Every parameter tensor (elements, and whether it is a weight-decayed matrix) the config
    predicts is one the model allocates, padding included (MoE presets: experts every other layer,
    a shared expert and its gate where they have them)."""
    extra = ["model.moe_layer_frequency=2"] if preset == "qwen2-moe-tiny" else []
    cfg = load_config(None, [f"model.preset={preset}", *extra])
    init_model_parallel(cfg)
    with torch.device("meta"):
        model = build_model(cfg)
    built = sorted((p.numel(), p.dim() >= 2) for p in model.parameters())
    assert sorted(stage_tensors(cfg, Layout())[0]) == built


def test_deepspeed_zero2_estimate_is_reproduced():
    """DeepSpeed's own estimator (2P + 18P/N per GPU without offload) against plmscale's bf16 ZeRO-2
    accounting, for its documented use: a model's total parameters over N GPUs."""
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    for params, gpus in ((2_851_000_000 // 16 * 16, 1), (6_700_000_000 // 16 * 16, 8),
                         (175_000_000_000 // 64 * 64, 16)):
        _, deepspeed_gpu = estimate_zero2_model_states_mem_needs(params, gpus, 1, cpu_offload=False)
        ours = model_states([(params, True)], gpus, 2, "bf16")
        assert ours.total == deepspeed_gpu == deepspeed_zero2_gpu_bytes(params, gpus)


# Megatron-LM docs (distributed optimizer): bytes per parameter, d = data-parallel size.
MEGATRON_TABLE = [((2, 2), 20, (4, 16)), ((2, 4), 18, (6, 12)), ((4, 4), 16, (8, 8))]


@pytest.mark.parametrize("dtypes,plain,distributed", MEGATRON_TABLE)
@pytest.mark.parametrize("dp", [1, 4, 64])
def test_megatron_bytes_per_parameter_table(dtypes, plain, distributed, dp):
    assert megatron_bytes_per_parameter(*dtypes, dp, False) == plain
    assert megatron_bytes_per_parameter(*dtypes, dp, True) == pytest.approx(
        distributed[0] + distributed[1] / dp)


def test_zero_stages_shrink_what_they_partition():
    tensors = [(1000, True), (24, False)]
    states = {z: model_states(tensors, 4, z, "fp32") for z in range(4)}
    assert states[0].total == 16 * 1024  # 4 + 4 + 8 bytes per parameter, no master copy
    assert states[1].optimizer == states[2].optimizer == 8 * (1000 + 24) // 4
    assert states[2].gradients < states[1].gradients
    assert states[3].parameters == 4 * (250 + 6)


def _saved_bytes(cfg, batch):
    """Bytes of the distinct tensors (parameters aside) that autograd keeps for the backward pass
    of one forward."""
    init_model_parallel(cfg)
    model = build_model(cfg)
    initialize_parameters(model, 0, 0.02, cfg.model.vocab_size)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(batch)
    return sum(storages.values())


@pytest.mark.parametrize("preset", ["gpt-tiny", "bert-tiny"])
def test_activation_estimate_within_20_percent_of_saved_tensors(preset):
    cfg = load_config(None, [f"model.preset={preset}", "data.seq_length=128",
                             "train.micro_batch_size=4", "model.hidden_dropout=0.1",
                             "model.attention_dropout=0.1"])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, cfg.model.vocab_size, (4, 128), generator=g)
    if cfg.model.family == "gpt":
        batch = {"input_ids": ids, "labels": torch.roll(ids, -1, 1)}
    else:
        labels = torch.full_like(ids, -100)
        picked = torch.rand(ids.shape, generator=g) < cfg.objective.mlm_probability
        labels[picked] = ids[picked]
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "mlm_labels": labels,
                 "token_type_ids": torch.zeros_like(ids), "next_sentence_label": torch.tensor([0, 1, 0, 1])}
    measured = _saved_bytes(cfg, batch)
    predicted = activation_bytes(cfg, Layout(), gpu=False)
    assert predicted == pytest.approx(measured, rel=0.2), (predicted, measured)


@pytest.mark.parametrize("backend", ["sdpa", "fused-softmax"])
def test_activation_estimate_follows_the_attention_backend(backend):
    """At seq 512 with a small vocabulary the [s, s] attention tensors are most of a GPT layer's
    activations: SDPA (no attention dropout: the CPU flash kernel) keeps none of them, the softmax
    backends keep them. The estimate tracks the saved tensors within 5% either way."""
    cfg = load_config(None, ["model.preset=gpt-tiny", "data.seq_length=512", "train.micro_batch_size=2",
                             "model.vocab_size=1000", "model.max_position_embeddings=512",
                             "model.attention_dropout=0", f"model.attention_backend={backend}"])
    ids = torch.randint(5, 1000, (2, 512), generator=torch.Generator().manual_seed(0))
    measured = _saved_bytes(cfg, {"input_ids": ids, "labels": torch.roll(ids, -1, 1)})
    assert activation_bytes(cfg, Layout(), gpu=False) == pytest.approx(measured, rel=0.05)
