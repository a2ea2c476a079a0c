"""Rank functions for the BERT parallel tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

import torch
from closeness import Closeness, closeness
from workers_common import gathered_training_run, load_exported, tp2_and_tp1, tp2_vs_tp1

from plmscale.config import load_config
from plmscale.parallel import init_distributed, init_model_parallel, seed_all

TINY = ["model.preset=bert-tiny", "model.num_attention_heads=4", "model.vocab_size=1100",
        "model.max_position_embeddings=64", "model.hidden_dropout=0", "model.attention_dropout=0"]


def fixed_batch(vocab: int, batch: int = 4, seq: int = 24, seed: int = 7) -> dict:
    """A batch with padding, two segments, and ~15% labelled positions; identical on every rank."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (batch, seq), generator=g)
    lengths = torch.tensor([seq, seq - 5, seq - 9, 11])
    attention = (torch.arange(seq)[None] < lengths[:, None]).long()
    types = (torch.arange(seq)[None] >= (lengths[:, None] // 2)).long() * attention
    labels = torch.full((batch, seq), -100)
    chosen = (torch.rand(batch, seq, generator=g) < 0.2) & attention.bool()
    chosen[:, 1] = True
    labels[chosen] = ids[chosen]
    # The highest ids are in the last TP rank's slice, next to the padding columns.
    labels[0, 2] = vocab - 1
    return {"input_ids": ids * attention, "token_type_ids": types, "attention_mask": attention,
            "mlm_labels": labels, "next_sentence_label": torch.tensor([0, 1, 1, 0])}


def tensor_parallel_vs_single(overrides: list[str]) -> dict:
    """Loss, gathered gradients and HF logits of TP=2 against TP=1 on identical weights and batch."""
    init_distributed()
    cfg = load_config(None, TINY + overrides)
    batch = fixed_batch(cfg.model.vocab_size)
    a, b = tp2_and_tp1(cfg, batch, lambda model: [t.float() for t in model.logits(
        batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])])
    return {
        **tp2_vs_tp1(a, b),
        "hf_logit_diff": hf_logit_diff(cfg, a["params"], a["logits"], batch),
        "loss": b["out"]["loss"],
    }


def hf_logit_diff(cfg, params: dict, logits: list, batch: dict) -> Closeness:
    """Closeness of ours to HF over MLM and NSP logits after exporting the (TP-gathered) weights."""
    from transformers import BertForPreTraining

    from plmscale.families.bert.hf import hf_config, to_hf_state_dict
    hf = BertForPreTraining(hf_config(cfg.model)).eval()
    load_exported(hf, to_hf_state_dict(params, cfg.model))
    with torch.no_grad():
        ref = hf(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                 attention_mask=batch["attention_mask"])
    return closeness(logits, [ref.prediction_logits, ref.seq_relationship_logits], "HF logits")


def train_runs(shards: str, runs: list[list[str]]) -> list[list[dict]]:
    """Train once per override list (same process group); returns each run's per-step metrics."""
    from plmscale.training.loop import train
    init_distributed()
    histories = []
    for overrides in runs:
        cfg = load_config(None, TRAIN + [f"data.path={shards}"] + overrides)
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)
        histories.append(train(cfg))
    return histories


TRAIN = ["model.preset=bert-tiny", "model.vocab_size=8000", "model.max_position_embeddings=64",
         "data.seq_length=64", "data.num_workers=0", "train.micro_batch_size=8",
         "train.lr=1e-3", "train.warmup_steps=2", "train.progress_bar=false"]


def train_and_gather(shards: str, overrides: list[str]) -> dict:
    """Train with the given layout; return the per-step losses and the whole model's parameters
    under their ordinary names (gathered over TP and PP), so layouts can be compared."""
    init_distributed()
    return gathered_training_run(load_config(None, TRAIN + [f"data.path={shards}"] + overrides))
