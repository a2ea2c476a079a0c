"""Rank functions for the ELECTRA parallel tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

import torch
from closeness import Closeness, closeness
from workers_common import (gathered_training_run, held_out_batch, load_exported,
                            restored_from_checkpoint, tp2_and_tp1, tp2_vs_tp1)

from plmscale.config import load_config
from plmscale.export import full_tensors
from plmscale.parallel import init_distributed, init_model_parallel, seed_all

TINY = ["model.preset=electra-tiny", "model.vocab_size=1100", "model.max_position_embeddings=64",
        "model.hidden_dropout=0", "model.attention_dropout=0"]

TRAIN = ["model.preset=electra-tiny", "model.vocab_size=8000", "model.max_position_embeddings=64",
         "data.seq_length=64", "data.num_workers=0", "objective.next_sentence_prediction=false",
         "objective.mask_token_fraction=0.85", "objective.random_token_fraction=0.0",
         "train.micro_batch_size=16", "train.lr=2e-3", "train.warmup_steps=3",
         "train.progress_bar=false"]


def tensor_parallel_vs_single(overrides: list[str]) -> dict:
    """Loss, gathered gradients and HF logits (both halves) of TP=2 against TP=1."""
    from bert_workers import fixed_batch
    init_distributed()
    cfg = load_config(None, TINY + overrides)
    batch = fixed_batch(cfg.model.vocab_size)
    # The generator's samples come from the seeded stream, which tp2_and_tp1 resets per layout.
    a, b = tp2_and_tp1(cfg, batch, lambda model: model.logits(
        batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]))
    return {
        **tp2_vs_tp1(a, b),
        "out": b["out"],
        "hf_logit_diff": hf_logit_diff(cfg, a["params"], a["logits"], batch),
    }


def hf_logit_diff(cfg, params: dict, logits: tuple, batch: dict) -> dict:
    """Closeness of ours to HF for the discriminator (ElectraForPreTraining) and generator
    (ElectraForMaskedLM) logits after exporting the gathered weights."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    from plmscale.families.electra.hf import (generator_hf_config, generator_to_hf_state_dict,
                                         hf_config, to_hf_state_dict)
    diffs = {}
    inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    for name, cls, config, mapping, ours in (
            ("discriminator", ElectraForPreTraining, hf_config, to_hf_state_dict, logits[0]),
            ("generator", ElectraForMaskedLM, generator_hf_config, generator_to_hf_state_dict,
             logits[1])):
        hf = cls(config(cfg.model)).eval()
        load_exported(hf, mapping(params, cfg.model))
        with torch.no_grad():
            ref = hf(**inputs).logits
        assert ref.shape == ours.shape, (ref.shape, ours.shape)
        diffs[name] = closeness(ours.float(), ref, f"HF {name} logits")
    return diffs


def train_then_export(shards: str, checkpoint_dir: str, steps: int) -> dict:
    """TP=2 training on real text with a checkpoint at the end; then a fresh model restored from that
    checkpoint through DeepSpeed is exported and compared with HF on a real batch."""
    import time

    from plmscale.training.loop import train
    init_distributed()
    cfg = load_config(None, TRAIN + [f"data.path={shards}", "parallel.tensor_model_parallel_size=2",
                                     f"train.train_steps={steps}", f"train.save_dir={checkpoint_dir}"])
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    start = time.time()
    history = train(cfg)
    seconds = time.time() - start

    cfg.train.save_dir = None
    model = restored_from_checkpoint(cfg, checkpoint_dir)
    batch = held_out_batch(cfg, ("input_ids", "token_type_ids", "attention_mask"))
    params = full_tensors(model, cfg.model.vocab_size)
    logits = model.logits(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    return {"losses": [h["loss"] for h in history], "seconds": seconds,
            "metrics": history[-1], "hf_logit_diff": hf_logit_diff(cfg, params, logits, batch)}


def train_and_gather(shards: str, overrides: list[str]) -> dict:
    """Train with the given layout; per-step losses and the whole model's parameters under their
    ordinary names (gathered over TP and PP) before and after."""
    init_distributed()
    return gathered_training_run(load_config(None, TRAIN + [f"data.path={shards}"] + overrides))
