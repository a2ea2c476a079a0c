"""Rank functions for the ELECTRA parallel tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

import numpy as np
import torch

from plmscale.config import load_config
from plmscale.export import full_tensors
from plmscale.parallel import init_distributed, init_model_parallel, seed_all
from plmscale.training.engine import build_initialised_model

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
    runs = {}
    for tp in (2, 1):
        cfg.parallel.tensor_model_parallel_size = tp
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)  # the generator's samples come from this stream
        model = build_initialised_model(cfg)
        out = model(batch)
        out["loss"].backward()
        runs[tp] = {"out": {k: float(v) for k, v in out.items()},
                    "grads": full_tensors(model, cfg.model.vocab_size, grads=True),
                    "params": full_tensors(model, cfg.model.vocab_size),
                    "logits": model.logits(batch["input_ids"], batch["token_type_ids"],
                                           batch["attention_mask"])}
    a, b = runs[2], runs[1]
    return {
        "out": b["out"],
        "loss_diff": max(abs(a["out"][k] - b["out"][k]) for k in a["out"]),
        "grad_diff": max((a["grads"][n] - b["grads"][n]).abs().max().item() for n in a["grads"]),
        "param_diff": max((a["params"][n] - b["params"][n]).abs().max().item() for n in a["params"]),
        "grad_norm": sum(g.norm() ** 2 for g in b["grads"].values()).item() ** 0.5,
        "hf_logit_diff": hf_logit_diff(cfg, a["params"], a["logits"], batch),
    }


def hf_logit_diff(cfg, params: dict, logits: tuple, batch: dict) -> dict:
    """Max |ours - HF| of the discriminator (ElectraForPreTraining) and generator
    (ElectraForMaskedLM) logits after exporting the gathered weights."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    from plmscale.export.electra import (generator_hf_config, generator_to_hf_state_dict,
                                         hf_config, to_hf_state_dict)
    diffs = {}
    inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    for name, cls, config, mapping, ours in (
            ("discriminator", ElectraForPreTraining, hf_config, to_hf_state_dict, logits[0]),
            ("generator", ElectraForMaskedLM, generator_hf_config, generator_to_hf_state_dict,
             logits[1])):
        hf = cls(config(cfg.model)).eval()
        missing, unexpected = hf.load_state_dict(mapping(params, cfg.model), strict=False)
        assert not unexpected and not [m for m in missing if "position_ids" not in m], (missing,
                                                                                       unexpected)
        with torch.no_grad():
            ref = hf(**inputs).logits
        assert ref.shape == ours.shape, (ref.shape, ours.shape)
        diffs[name] = (ours.float() - ref).abs().max().item()
    return diffs


def train_then_export(shards: str, checkpoint_dir: str, steps: int) -> dict:
    """TP=2 training on real text with a checkpoint at the end; then a fresh model restored from that
    checkpoint through DeepSpeed is exported and compared with HF on a real batch."""
    import time

    from plmscale.data import Corpus
    from plmscale.models import get_family
    from plmscale.training import checkpoint
    from plmscale.training.engine import build_engine
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
    engine, _ = build_engine(cfg)
    checkpoint.load(engine, checkpoint_dir)
    model = engine.module.eval()
    samples = get_family("electra").samples(Corpus(shards), cfg)
    batch = {k: torch.from_numpy(np.stack([samples(10_000 + i)[k] for i in range(4)]))
             for k in ("input_ids", "token_type_ids", "attention_mask")}
    params = full_tensors(model, cfg.model.vocab_size)
    logits = model.logits(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    return {"losses": [h["loss"] for h in history], "seconds": seconds,
            "metrics": history[-1], "hf_logit_diff": hf_logit_diff(cfg, params, logits, batch)}


def train_and_gather(shards: str, overrides: list[str]) -> dict:
    """Train with the given layout; per-step losses and the whole model's parameters under their
    ordinary names (gathered over TP and PP)."""
    from plmscale.parallel.pipeline import full_pipeline_tensors
    from plmscale.training.engine import uses_pipeline
    from plmscale.training.loop import train
    init_distributed()
    cfg = load_config(None, TRAIN + [f"data.path={shards}"] + overrides)
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    model = build_initialised_model(cfg)
    gather = full_pipeline_tensors if uses_pipeline(cfg) else full_tensors
    initial = gather(model, cfg.model.vocab_size)
    history = train(cfg, model)
    return {"losses": [h["loss"] for h in history], "initial": initial,
            "params": gather(model, cfg.model.vocab_size)}
