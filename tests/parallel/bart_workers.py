"""Rank functions for the BART parallel tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

import time

import torch
from closeness import Closeness, closeness
from workers_common import (gathered_training_run, initialised_model, max_abs_diff, tp2_and_tp1,
                            tp2_vs_tp1)

from plmscale.config import load_config
from plmscale.export import full_tensors
from plmscale.parallel import init_distributed, init_model_parallel, seed_all

TINY = ["model.preset=bart-tiny", "model.vocab_size=1100", "model.max_position_embeddings=64",
        "model.hidden_dropout=0", "model.attention_dropout=0"]


def fixed_batch(vocab: int, batch: int = 4, src: int = 20, tgt: int = 14, seed: int = 7) -> dict:
    """Encoder and decoder padding of different lengths per row; identical on every rank."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (batch, src), generator=g)
    attention = (torch.arange(src)[None] < torch.tensor([src, src - 6, 9, 3])[:, None]).long()
    target = torch.randint(10, vocab, (batch, tgt), generator=g)
    target[0, 3] = vocab - 1  # in the last TP rank's slice, next to the padding columns
    target_len = torch.tensor([tgt, tgt - 4, 2, 7])
    real = torch.arange(tgt)[None] < target_len[:, None]
    labels = torch.where(real, target, torch.full_like(target, -100))
    decoder_input = torch.cat([torch.full((batch, 1), 2), target[:, :-1]], dim=1) * real
    return {"input_ids": ids * attention, "attention_mask": attention,
            "decoder_input_ids": decoder_input, "labels": labels}


def hf_logit_diff(cfg, params: dict, logits: torch.Tensor, batch: dict) -> Closeness:
    """Closeness of ours to HF over every decoder position after exporting the (TP-gathered) weights."""
    from transformers import BartForConditionalGeneration

    from plmscale.families.bart.hf import hf_config, to_hf_state_dict
    hf = BartForConditionalGeneration(hf_config(cfg.model)).eval()
    state = to_hf_state_dict(params, cfg.model)
    expected = set(hf.state_dict())
    assert set(state) == expected, (sorted(set(state) ^ expected))[:10]
    hf.load_state_dict(state, strict=True)
    with torch.no_grad():
        ref = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 decoder_input_ids=batch["decoder_input_ids"]).logits
    assert ref.shape == logits.shape, (ref.shape, logits.shape)
    return closeness(logits.float(), ref, "HF logits")


def tensor_parallel_vs_single(overrides: list[str]) -> dict:
    """Loss, gathered gradients and HF logits of TP=2 against TP=1 on identical weights and batch."""
    init_distributed()
    cfg = load_config(None, TINY + overrides)
    batch = fixed_batch(cfg.model.vocab_size)
    a, b = tp2_and_tp1(cfg, batch, lambda model: model.logits(
        batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"]))
    return {
        **tp2_vs_tp1(a, b),
        "grad_names": sorted(a["grads"]) == sorted(b["grads"]),
        "zero_grads": [n for n, g in b["grads"].items() if g.abs().max() == 0],
        "hf_logit_diff": max((hf_logit_diff(cfg, run["params"], run["logits"], batch)
                              for run in (a, b)), key=lambda c: c.ratio),
        "loss": b["out"]["loss"],
    }


def train_tp2_then_export(shards: str, steps: int) -> dict:
    """Train a few steps with TP=2 through the real loop, gather, export, compare with HF on a real
    batch; the weights must have moved away from the initialisation."""
    from plmscale.data import Corpus
    from plmscale.families.bart.samples import BartSamples
    from plmscale.training.loop import train
    init_distributed()
    cfg = load_config(None, TINY + [
        "model.vocab_size=8000", "data.seq_length=64", f"data.path={shards}", "data.num_workers=0",
        "parallel.tensor_model_parallel_size=2", "parallel.zero_stage=1",
        f"train.train_steps={steps}", "train.micro_batch_size=4", "train.lr=1e-3",
        "train.warmup_steps=1", "train.progress_bar=false"])
    model = initialised_model(cfg)
    initial = full_tensors(model, cfg.model.vocab_size)
    history = train(cfg, model)
    params = full_tensors(model, cfg.model.vocab_size)
    corpus = Corpus(shards)
    samples = BartSamples(corpus, corpus.tokens, cfg.data, cfg.objective, seed=99)
    rows = [samples(i) for i in range(3)]
    batch = {k: torch.stack([torch.from_numpy(r[k]) for r in rows]) for k in rows[0]}
    model.eval()
    logits = model.logits(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"])
    return {"losses": [h["loss"] for h in history],
            "moved": max_abs_diff(params, initial),
            "hf_logit_diff": hf_logit_diff(cfg, params, logits, batch)}


def train_config(config: str, shards: str, overrides: list[str]) -> dict:
    """Train ``config`` on the demo shards; returns per-step losses, the wall time and this rank's
    CPU time (the wall time an idle machine would need: each rank has a core of its own)."""
    from plmscale.training.loop import train
    init_distributed()
    cfg = load_config(config, [f"data.path={shards}"] + overrides)
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    start, cpu = time.perf_counter(), time.process_time()
    history = train(cfg)
    return {"losses": [h["loss"] for h in history], "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu}


def tensor_parallel_checks(shards: str, steps: int) -> dict:
    """Both TP checks in one spawned group (spawning ranks costs ~10 s)."""
    return {"equivalence": tensor_parallel_vs_single([]),
            "trained_export": train_tp2_then_export(shards, steps)}


PIPE = ["model.num_layers=1", "model.num_decoder_layers=3", "model.hidden_dropout=0",
        "model.attention_dropout=0", "train.train_steps=3", "train.gradient_accumulation_steps=2",
        "train.micro_batch_size=4", "train.warmup_steps=1", "parallel.zero_stage=1",
        "parallel.tensor_model_parallel_size=1",
        "train.progress_bar=false", "train.save_dir=null", "train.tensorboard_dir=null",
        "data.num_workers=0"]


def train_and_gather(config: str, shards: str, runs: list[list[str]]) -> list[dict]:
    """Per override list: train ``config`` with that layout; return the per-step losses and the
    whole model's parameters under their ordinary names (gathered over TP and PP) before and after."""
    init_distributed()
    return [gathered_training_run(load_config(config, PIPE + [f"data.path={shards}"] + overrides))
            for overrides in runs]
