"""Rank functions for the RoBERTa / ALBERT parallel tests (module-level so spawned ranks can import
them). Each checks one family against itself under TP=1 and TP=2 and against HF after export."""

from __future__ import annotations

import torch
from closeness import closeness
from workers_common import (initialised_model, load_exported, tp2_and_tp1, tp2_vs_tp1,
                            whole_model_tensors)

from plmscale.config import load_config
from plmscale.export import full_tensors
from plmscale.families import get_family
from plmscale.parallel import init_distributed, init_model_parallel, seed_all

NO_DROPOUT = ["model.hidden_dropout=0", "model.attention_dropout=0"]
# 4 heads so that TP=2 splits them; vocab 1100 leaves TP padding columns in the last rank's slice.
TINY = {
    "roberta": ["model.preset=roberta-tiny", "model.num_attention_heads=4", "model.vocab_size=1100",
                "model.max_position_embeddings=64"] + NO_DROPOUT,
    "albert": ["model.preset=albert-tiny", "model.num_attention_heads=4", "model.vocab_size=1100",
               "model.max_position_embeddings=64", "objective.sentence_order_prediction=true"]
              + NO_DROPOUT,
}
HF_PAD = {"roberta": 1, "albert": 0}  # the exported configs' pad_token_id


def fixed_batch(family: str, vocab: int, batch: int = 4, seq: int = 24, seed: int = 7) -> dict:
    """Padding, two segments (ALBERT), ~20% labelled positions (one with the highest id, next to
    the TP padding columns); identical on every rank. Pads use the HF config's pad id, from which HF
    RoBERTa derives its positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (batch, seq), generator=g)
    lengths = torch.tensor([seq, seq - 5, seq - 9, 11])
    attention = (torch.arange(seq)[None] < lengths[:, None]).long()
    ids = torch.where(attention.bool(), ids, torch.full_like(ids, HF_PAD[family]))
    labels = torch.full((batch, seq), -100)
    chosen = (torch.rand(batch, seq, generator=g) < 0.2) & attention.bool()
    chosen[:, 1] = True
    labels[chosen] = ids[chosen]
    labels[0, 2] = vocab - 1
    out = {"input_ids": ids, "attention_mask": attention, "mlm_labels": labels}
    if family == "albert":
        out["token_type_ids"] = (torch.arange(seq)[None] >= (lengths[:, None] // 2)).long() * attention
        out["sentence_order_label"] = torch.tensor([0, 1, 1, 0])
    return out


def _our_logits(family: str, model, batch: dict) -> list[torch.Tensor]:
    if family == "roberta":
        return [model.logits(batch["input_ids"], batch["attention_mask"])]
    return list(model.logits(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]))


def compare_with_hf(family: str, cfg, params: dict, logits: list, batch: dict,
                    grads: dict | None = None) -> dict:
    """Export ``params`` (full tensors) to the family's HF class; closeness of ours to HF in logits
    and, if ``grads`` are given, of the gradients of the same loss (the tied and shared tensors
    included: HF accumulates them the same way)."""
    import transformers
    fam = get_family(family)
    hf = getattr(transformers, fam.hf_model_class)(fam.hf_config(cfg.model)).eval()
    load_exported(hf, fam.to_hf_state_dict(params, cfg.model))
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "labels": batch["mlm_labels"]}
    if family == "albert":
        kwargs.update(token_type_ids=batch["token_type_ids"],
                      sentence_order_label=batch["sentence_order_label"])
    out = hf(**kwargs)
    ref = [out.logits] if family == "roberta" else [out.prediction_logits, out.sop_logits]
    result = {"hf_logit_diff": closeness(list(logits), ref, "HF logits"),
              "hf_loss": out.loss.item()}
    if grads is not None:
        out.loss.backward()
        ours = fam.to_hf_state_dict(grads, cfg.model)
        result["hf_grad_diff"] = closeness({n: ours[n] for n, _ in hf.named_parameters()},
                                           {n: p.grad for n, p in hf.named_parameters()}, "HF grads")
    return result


def tensor_parallel_vs_single(family: str, shards: str) -> dict:
    """(1) TP=2 vs TP=1 on identical weights and batch: loss, gathered gradients, and HF's logits and
    gradients after export; (2) a few DeepSpeed steps with TP=2 on real text, then gather, export
    and compare logits with HF again (eval mode)."""
    init_distributed()
    cfg = load_config(None, TINY[family])
    batch = fixed_batch(family, cfg.model.vocab_size)
    a, b = tp2_and_tp1(cfg, batch, lambda model: _our_logits(family, model, batch))
    result = {
        **tp2_vs_tp1(a, b),
        "metric_names": sorted(a["out"]),
        "loss": b["out"]["loss"],
        "params": {n: tuple(p.shape) for n, p in b["params"].items()},
    }
    hf = compare_with_hf(family, cfg, a["params"], a["logits"], batch, grads=a["grads"])
    result.update(hf)
    result["hf_loss_diff"] = closeness(b["out"]["loss"], hf["hf_loss"], "HF loss")
    result["trained"] = train_then_compare(family, shards)
    return result


def train_then_compare(family: str, shards: str) -> dict:
    """3 steps of ``plmscale.training.loop.train`` with TP=2 (dropout on, ZeRO-1), then export."""
    from plmscale.training.loop import train
    overrides = [o for o in TINY[family] if o not in NO_DROPOUT and "vocab_size" not in o]
    cfg = load_config(None, overrides + [
        "model.vocab_size=8000", f"data.path={shards}", "data.seq_length=64", "data.num_workers=0",
        "parallel.tensor_model_parallel_size=2", "parallel.zero_stage=1",
        "train.micro_batch_size=4", "train.train_steps=3", "train.lr=1e-3", "train.warmup_steps=1",
        "train.progress_bar=false", "train.seed=5"])
    model = initialised_model(cfg)
    initial = full_tensors(model, cfg.model.vocab_size)
    history = train(cfg, model)
    model.eval()
    params = full_tensors(model, cfg.model.vocab_size)
    batch = fixed_batch(family, cfg.model.vocab_size, seed=11)
    result = compare_with_hf(family, cfg, params, _our_logits(family, model, batch), batch)
    result["losses"] = [h["loss"] for h in history]
    result["metrics"] = sorted(history[-1])
    result["changed"] = min((params[n] - initial[n]).abs().max().item() for n in params)
    return result


def train_config(path: str, shards: str, steps: int | None = None, metric: str = "mlm_loss") -> dict:
    """Train a YAML config on the demo shards; per-step losses (total and ``metric``, returned as
    "mlm_losses") and the wall time."""
    import time

    from plmscale.training.loop import train
    init_distributed()
    overrides = [f"data.path={shards}", "data.num_workers=0", "train.progress_bar=false", "train.save_dir=null",
                 "train.tensorboard_dir=null"]
    if steps:
        overrides.append(f"train.train_steps={steps}")
    cfg = load_config(path, overrides)
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    start = time.perf_counter()
    history = train(cfg)
    return {"losses": [h["loss"] for h in history],
            "mlm_losses": [h[metric] for h in history if metric in h],
            "named_losses": {k: [h[k] for h in history] for k in history[-1] if k.endswith("_loss")},
            "seconds": time.perf_counter() - start, "metrics": sorted(history[-1])}


PIPE = {"roberta": TINY["roberta"], "albert": TINY["albert"]}
PIPE_TRAIN = ["model.vocab_size=8000", "data.seq_length=64", "data.num_workers=0",
              "train.micro_batch_size=4", "train.train_steps=3",
              "train.gradient_accumulation_steps=2", "train.lr=1e-3", "train.warmup_steps=1",
              "train.progress_bar=false", "parallel.zero_stage=1", "model.num_layers=4"]


def train_and_gather(shards: str, layout: list[str]) -> dict:
    """For each family: train 3 steps with ``layout``; the per-step losses and the whole model's
    parameters under their ordinary names (gathered over TP and PP), to compare layouts."""
    from plmscale.training.engine import uses_pipeline
    from plmscale.training.loop import train
    init_distributed()
    out = {}
    for family, overrides in PIPE.items():
        overrides = [o for o in overrides if "vocab_size" not in o]
        cfg = load_config(None, overrides + PIPE_TRAIN + [f"data.path={shards}"] + layout)
        model = initialised_model(cfg)
        history = train(cfg, model)
        out[family] = {"losses": [h["loss"] for h in history],
                       "params": whole_model_tensors(model, cfg)}
        if family == "albert" and uses_pipeline(cfg):
            # The shared layer: one module per stage, used at each of its depths, copies equal.
            layer = model.tied_modules["layer"]
            out["albert_stage_layer"] = {n: p.detach().clone() for n, p in layer.named_parameters()}
    return out
