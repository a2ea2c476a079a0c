"""Rank functions for the T5 parallel tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from closeness import Closeness, closeness
from workers_common import (gathered_training_run, held_out_batch, initialised_model, tp2_and_tp1,
                            tp2_vs_tp1)

from plmscale.config import load_config
from plmscale.export import full_tensors
from plmscale.parallel import init_distributed

# Small buckets / distance so that a 20-token batch uses the logarithmic buckets too. The preset's
# T5 initialisation (model.init_method=t5) makes logits O(1), so HF comparisons are not between
# near-zero numbers.
TINY = ["model.preset=t5-tiny", "model.vocab_size=1100", "model.hidden_dropout=0",
        "model.attention_dropout=0", "model.relative_attention_num_buckets=8",
        "model.relative_attention_max_distance=16"]
V1_1 = ["model.activation=gated-gelu", "model.tie_word_embeddings=false",
        "model.scale_tied_logits=false"]


def fixed_batch(vocab: int, batch: int = 4, seq: int = 20, target: int = 9, seed: int = 7) -> dict:
    """Encoder and decoder padding, labels on real target positions; identical on every rank."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (batch, seq), generator=g)
    attention = (torch.arange(seq)[None] < torch.tensor([seq, seq - 4, 11, 6])[:, None]).long()
    labels = torch.randint(10, vocab, (batch, target), generator=g)
    labels[0, 2] = vocab - 1  # in the last TP rank's slice, next to the padding columns
    decoder_attention = (torch.arange(target)[None] < torch.tensor([target, 7, 5, 3])[:, None]).long()
    labels = labels.masked_fill(decoder_attention == 0, -100)
    decoder_ids = torch.cat([torch.zeros(batch, 1, dtype=torch.long), labels[:, :-1].clamp(min=0)], 1)
    return {"input_ids": ids * attention, "attention_mask": attention,
            "decoder_input_ids": decoder_ids, "decoder_attention_mask": decoder_attention,
            "labels": labels}


def hf_logit_diff(cfg, params: dict, logits: torch.Tensor, batch: dict) -> Closeness:
    """Closeness of ours to HF over every decoder position after exporting the (TP-gathered) weights."""
    from plmscale.families.t5.hf import to_hf_model
    hf = to_hf_model(params, cfg.model)
    with torch.no_grad():
        ref = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 decoder_input_ids=batch["decoder_input_ids"],
                 decoder_attention_mask=batch["decoder_attention_mask"]).logits
    return closeness(logits, ref, "HF logits")


def tensor_parallel_vs_single(variants: list[list[str]]) -> list[dict]:
    """Per variant: loss, gathered gradients and HF logits of TP=2 against TP=1, same weights/batch."""
    init_distributed()
    results = []
    for overrides in variants:
        cfg = load_config(None, TINY + overrides)
        batch = fixed_batch(cfg.model.vocab_size)
        a, b = tp2_and_tp1(cfg, batch, lambda model: model.logits(
            batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"],
            batch["decoder_attention_mask"]).float())
        results.append({
            **tp2_vs_tp1(a, b),
            "zero_grads": [n for n, g in b["grads"].items() if g.abs().max() == 0],
            "grad_scale": max(g.abs().max().item() for g in b["grads"].values()),
            "logit_scale": b["logits"].abs().max().item(),
            "hf_logit_diff_tp2": hf_logit_diff(cfg, a["params"], a["logits"], batch),
            "hf_logit_diff_tp1": hf_logit_diff(cfg, b["params"], b["logits"], batch),
            "loss": b["out"]["loss"],
        })
    return results


REPO = Path(__file__).resolve().parents[2]
TRAIN = ["data.num_workers=0", "train.progress_bar=false", "train.save_dir=null",
         "train.tensorboard_dir=null"]


def _tiny_config(shards: str, overrides: list[str]):
    """configs/t5_tiny.yaml on the demo shards, without saving, plus ``overrides``."""
    return load_config(REPO / "configs" / "t5_tiny.yaml", TRAIN + [f"data.path={shards}"] + overrides)


def train_and_export(shards: str, runs: list[list[str]]) -> list[dict]:
    """Per override list: train configs/t5_tiny.yaml on real text (``plmscale.training.loop.train``),
    then gather, export and compare with HF on a batch of real samples."""
    from plmscale.training.loop import train
    init_distributed()
    results = []
    for overrides in runs:
        cfg = _tiny_config(shards, overrides)
        model = initialised_model(cfg)
        start = time.perf_counter()
        history = train(cfg, model)
        seconds = time.perf_counter() - start
        model.eval()
        batch = held_out_batch(cfg)
        logits = model.logits(batch["input_ids"], batch["attention_mask"],
                              batch["decoder_input_ids"], batch["decoder_attention_mask"]).float()
        params = full_tensors(model, cfg.model.vocab_size)
        results.append({"losses": [h["loss"] for h in history], "seconds": seconds,
                        "hf_logit_diff": hf_logit_diff(cfg, params, logits, batch),
                        "logit_scale": logits.abs().max().item()})
    return results


def train_and_gather(shards: str, runs: list[list[str]]) -> list[dict]:
    """Per override list: train configs/t5_tiny.yaml with that layout; return the per-step losses and
    the whole model's parameters under their ordinary names (gathered over TP and PP)."""
    init_distributed()
    return [gathered_training_run(_tiny_config(shards, overrides)) for overrides in runs]
