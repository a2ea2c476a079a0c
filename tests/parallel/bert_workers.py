"""Rank functions for the BERT parallel tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

import torch

from plmscale.config import load_config
from plmscale.export import full_tensors
from plmscale.parallel import init_distributed, init_model_parallel, seed_all
from plmscale.training.engine import build_initialised_model

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
    runs = {}
    for tp in (2, 1):
        cfg.parallel.tensor_model_parallel_size = tp
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)
        model = build_initialised_model(cfg)
        out = model(batch)
        out["loss"].backward()
        runs[tp] = {"out": {k: float(v) for k, v in out.items()},
                    "grads": full_tensors(model, cfg.model.vocab_size, grads=True),
                    "params": full_tensors(model, cfg.model.vocab_size),
                    "logits": [t.float() for t in model.logits(batch["input_ids"],
                                                               batch["token_type_ids"],
                                                               batch["attention_mask"])]}
    a, b = runs[2], runs[1]
    return {
        "loss_diff": max(abs(a["out"][k] - b["out"][k]) for k in a["out"]),
        "grad_diff": max((a["grads"][n] - b["grads"][n]).abs().max().item() for n in a["grads"]),
        "param_diff": max((a["params"][n] - b["params"][n]).abs().max().item() for n in a["params"]),
        "grad_norm": sum(g.norm() ** 2 for g in b["grads"].values()).item() ** 0.5,
        "hf_logit_diff": hf_logit_diff(cfg, a["params"], a["logits"], batch),
        "loss": b["out"]["loss"],
    }


def hf_logit_diff(cfg, params: dict, logits: list, batch: dict) -> float:
    """Max |ours - HF| over MLM and NSP logits after exporting the (TP-gathered) weights."""
    from transformers import BertForPreTraining

    from plmscale.export.bert import hf_config, to_hf_state_dict
    hf = BertForPreTraining(hf_config(cfg.model)).eval()
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(params, cfg.model), strict=False)
    assert not unexpected and not [m for m in missing if "position_ids" not in m], (missing, unexpected)
    with torch.no_grad():
        ref = hf(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                 attention_mask=batch["attention_mask"])
    return max((logits[0] - ref.prediction_logits).abs().max().item(),
               (logits[1] - ref.seq_relationship_logits).abs().max().item())


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
    from plmscale.parallel.pipeline import full_pipeline_tensors
    from plmscale.training.engine import uses_pipeline
    from plmscale.training.loop import train
    init_distributed()
    cfg = load_config(None, TRAIN + [f"data.path={shards}"] + overrides)
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    model = build_initialised_model(cfg)
    history = train(cfg, model)
    gather = full_pipeline_tensors if uses_pipeline(cfg) else full_tensors
    return {"losses": [h["loss"] for h in history], "params": gather(model, cfg.model.vocab_size)}
