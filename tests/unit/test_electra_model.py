"""ELECTRA on one rank: parameter counts vs HF (meta device), and the RTD loss leaves the generator
without gradient while the shared embeddings and the discriminator get one."""

import pytest
import torch

from plmscale.config import load_config
from plmscale.config.families import family_fields
from plmscale.families import build_model, count_parameters
from plmscale.parallel import init_model_parallel, initialize_parameters, seed_all

# SPEC.md's table (= HF ElectraForPreTraining).
SPEC_DISCRIMINATOR = {"electra-small": 13_549_057, "electra-base": 109_483_009,
                      "electra-large": 335_142_913}

pytestmark = pytest.mark.usefixtures("single_rank")


def _build(overrides, meta=False):
    cfg = load_config(None, overrides)
    init_model_parallel(cfg)
    if meta:
        with torch.device("meta"):
            return cfg, build_model(cfg)
    model = build_model(cfg)
    initialize_parameters(model, cfg.train.seed, cfg.model.init_std, cfg.model.vocab_size)
    return cfg, model


@pytest.mark.parametrize("preset", ["electra-tiny", *sorted(SPEC_DISCRIMINATOR)])
def test_counts_match_hf_discriminator_and_generator(preset):
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    from plmscale.families.electra.hf import generator_hf_config, hf_config
    cfg, ours = _build([f"model.preset={preset}"], meta=True)
    with torch.device("meta"):
        disc = sum(p.numel() for p in ElectraForPreTraining(hf_config(cfg.model)).parameters())
        gen = sum(p.numel() for p in ElectraForMaskedLM(generator_hf_config(cfg.model)).parameters())
    networks = family_fields("electra").networks  # what --dry-run reports
    ours_disc = count_parameters(ours, cfg.model, networks["discriminator"])
    ours_gen = count_parameters(ours, cfg.model, networks["generator"])
    shared = count_parameters(ours.embeddings, cfg.model)
    assert ours_disc == disc == SPEC_DISCRIMINATOR.get(preset, disc)
    assert ours_gen == gen
    # One set of embeddings: the whole model is both networks minus one copy of the shared tables.
    assert count_parameters(ours, cfg.model) == disc + gen - shared
    print(f"{preset}: discriminator {disc:,}, generator (ElectraForMaskedLM) {gen:,}")


def test_rtd_loss_does_not_reach_the_generator():
    cfg, model = _build(["model.preset=electra-tiny", "model.vocab_size=500",
                         "model.max_position_embeddings=32"])
    seed_all(3)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 500, (3, 16), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, 2:6] = ids[:, 2:6]
    masked = ids.clone()
    masked[:, 2:6] = 4
    batch = {"input_ids": masked, "mlm_labels": labels, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids)}
    out = model(batch)
    out["rtd_loss"].backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    generator_only = [n for n in grads if n.startswith(("generator.", "generator_head."))]
    assert generator_only and all(grads[n] is None or not grads[n].any() for n in generator_only)
    for name in ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                 "embeddings.LayerNorm.weight", "discriminator.layers.0.mlp.linear_fc1.weight",
                 "discriminator_head.dense_prediction.weight"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    # The whole loss trains the generator too (through its MLM loss).
    model.zero_grad()
    model(batch)["loss"].backward()
    assert model.generator.layers[0].mlp.linear_fc1.weight.grad.abs().sum() > 0


def test_sampling_follows_the_generator_softmax():
    from plmscale.objectives.replaced_token import sample_from_logits
    cfg = load_config(None, [])
    init_model_parallel(cfg)
    torch.manual_seed(5)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = torch.cat([probs.log(), torch.tensor([float("-inf")] * 4)])  # 4 padding columns
    rows = logits.expand(40_000, -1).contiguous()
    ids = sample_from_logits(rows, true_vocab_size=4)
    freq = torch.bincount(ids, minlength=4).float() / ids.numel()
    assert torch.allclose(freq, probs, atol=0.01), freq
    # Same stream state, same draw (what keeps TP ranks in step); a new state, new draws.
    torch.manual_seed(5)
    assert torch.equal(sample_from_logits(rows, 4), ids)
    assert not torch.equal(sample_from_logits(rows, 4), ids)
