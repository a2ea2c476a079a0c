"""Rank functions for the GPT parallel tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from closeness import Closeness, adam_movement_atol, closeness
from workers_common import gathered_training_run, grad_norm, initialised_model, max_abs_diff

from plmscale.config import load_config
from plmscale.export import full_tensors
from plmscale.parallel import init_distributed

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.preset=gpt-tiny", "model.vocab_size=1100", "model.max_position_embeddings=64",
        "model.hidden_dropout=0", "model.attention_dropout=0"]
TRAIN = ["model.preset=gpt-tiny", "model.vocab_size=8000", "model.max_position_embeddings=64",
         "model.hidden_dropout=0", "model.attention_dropout=0", "data.seq_length=32",
         "data.num_workers=0", "train.train_steps=3", "train.lr=1e-3", "train.warmup_steps=1",
         "train.progress_bar=false", "parallel.zero_stage=0"]


def generate_module():
    """launch/generate.py as a module (launch/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("plmscale_generate", REPO / "launch/generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixed_batch(vocab: int, batch: int = 4, seq: int = 24, seed: int = 7) -> dict:
    """Next-token inputs/labels and, for the document-mask variant, 1-3 documents per row."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (batch, seq + 1), generator=g)
    tokens[0, 3] = vocab - 1  # the highest id is in the last TP rank's slice, next to the padding
    starts = torch.zeros(batch, seq, dtype=torch.long)
    starts[0, 5] = starts[1, 12] = starts[1, 20] = starts[3, 1] = 1
    return {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:],
            "document_ids": starts.cumsum(1)}


def tensor_parallel_vs_single(overrides: list[str]) -> dict:
    """TP=2 against TP=1 on identical weights and batch, with and without document masks: loss,
    accuracy, gathered gradients, logits; and the HF logits of the exported TP=2 weights."""
    init_distributed()
    cfg = load_config(None, TINY + overrides)
    batch = fixed_batch(cfg.model.vocab_size)
    plain = {k: v for k, v in batch.items() if k != "document_ids"}
    runs = {}
    for tp in (2, 1):
        cfg.parallel.tensor_model_parallel_size = tp
        model = initialised_model(cfg)
        for name, inputs in (("plain", plain), ("documents", batch)):
            model.zero_grad()
            out = model(inputs)
            out["loss"].backward()
            runs[tp, name] = {"out": {k: float(v) for k, v in out.items()},
                              "grads": full_tensors(model, cfg.model.vocab_size, grads=True),
                              "logits": model.logits(inputs["input_ids"],
                                                     inputs.get("document_ids"))}
        runs[tp, "params"] = full_tensors(model, cfg.model.vocab_size)
    result = {"param_diff": max_abs_diff(runs[2, "params"], runs[1, "params"])}
    for name in ("plain", "documents"):
        a, b = runs[2, name], runs[1, name]
        result[name] = {
            "metrics": closeness(a["out"], b["out"], f"{name} metrics"),
            "grads": closeness(a["grads"], b["grads"], f"{name} grads"),
            "logits": closeness(a["logits"], b["logits"], f"{name} logits"),
            "grad_norm": grad_norm(b["grads"]),
            "loss": b["out"]["loss"],
        }
    result["documents_change_loss"] = abs(result["plain"]["loss"] - result["documents"]["loss"])
    result["hf_logit_diff"] = hf_logit_diff(cfg, runs[2, "params"], runs[2, "plain"]["logits"],
                                            plain["input_ids"])
    return result


def hf_model(cfg, params: dict):
    from transformers import GPT2LMHeadModel

    from plmscale.families.gpt.hf import hf_config, to_hf_state_dict
    hf = GPT2LMHeadModel(hf_config(cfg.model)).eval()
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(params, cfg.model), strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    return hf


def hf_logit_diff(cfg, params: dict, logits: torch.Tensor, input_ids: torch.Tensor) -> Closeness:
    """Closeness of ours to HF in the next-token logits after exporting the (TP-gathered) weights."""
    with torch.no_grad():
        ref = hf_model(cfg, params)(input_ids=input_ids).logits
    return closeness(logits, ref, "HF logits")


def hf_greedy_text(cfg, params: dict, tokenizer: Path, prompt: str, max_new_tokens: int) -> str:
    """What generate.py must print, computed by HF's own greedy ``generate`` on exported weights."""
    import sentencepiece as spm

    from plmscale.data.tokenizer import SpecialTokens
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    eos = SpecialTokens.from_model(tokenizer).eos
    ids = torch.tensor([[eos] + sp.encode(prompt)])
    with torch.no_grad():
        out = hf_model(cfg, params).generate(ids, attention_mask=torch.ones_like(ids),
                                             max_new_tokens=max_new_tokens, do_sample=False,
                                             eos_token_id=eos, pad_token_id=eos)
    new = out[0, ids.shape[1]:].tolist()
    new = new[:new.index(eos)] if eos in new else new
    return sp.decode(sp.encode(prompt) + new)


def train_tp2_vs_tp1(shards: str, save_dir: str, prompt: str, max_new_tokens: int) -> dict:
    """3 DeepSpeed steps with TP=2 (DP=1, micro-batch 8) and TP=1 (DP=2, micro-batch 4: the same
    global batches) through ``loop.train``; the TP=2 run saves a checkpoint. Then: per-step losses,
    gathered gradients on a fixed batch and final weights compared; the trained TP=2 model's HF
    logits after export; the checkpoint reloaded through generate.py (its shards merged and
    re-sliced for TP=2) and its greedy text against HF's greedy decoding of the exported weights."""
    from plmscale.training.loop import train
    init_distributed()
    runs = {}
    for tp, micro_batch in ((2, 8), (1, 4)):
        extra = [f"train.save_dir={save_dir}"] if tp == 2 else []
        cfg = load_config(None, TRAIN + [f"data.path={shards}",
                                         f"parallel.tensor_model_parallel_size={tp}",
                                         f"train.micro_batch_size={micro_batch}"] + extra)
        model = initialised_model(cfg)
        initial = full_tensors(model, cfg.model.vocab_size)
        history = train(cfg, model)
        batch = fixed_batch(cfg.model.vocab_size, seq=cfg.data.seq_length)
        batch = {"input_ids": batch["input_ids"], "labels": batch["labels"]}
        model.zero_grad()
        model(batch)["loss"].backward()  # the trained weights' gradient, outside the engine
        runs[tp] = {"losses": [h["loss"] for h in history], "lrs": [h["lr"] for h in history],
                    "grads": full_tensors(model, cfg.model.vocab_size, grads=True),
                    "params": full_tensors(model, cfg.model.vocab_size),
                    "initial": initial,
                    "logits": model.logits(batch["input_ids"])}
        if tp == 2:
            trained_cfg, input_ids = cfg, batch["input_ids"]
    a, b = runs[2], runs[1]
    result = {
        "losses": b["losses"],
        "loss_diff": closeness(a["losses"], b["losses"], "losses"),
        "grad_diff": closeness(a["grads"], b["grads"], "grads"),
        "moved": max_abs_diff(a["params"], a["initial"]),
        "param_diff": closeness(a["params"], b["params"], "params", adam_movement_atol(b["lrs"])),
        "hf_logit_diff": hf_logit_diff(trained_cfg, a["params"], a["logits"], input_ids),
    }
    generate = generate_module()
    loaded_cfg, loaded = generate.load_model(save_dir)  # the shards re-sliced for TP=2
    reloaded = full_tensors(loaded, loaded_cfg.model.vocab_size)
    result["reload_diff"] = max_abs_diff(reloaded, a["params"])
    tokenizer = generate.tokenizer_path(save_dir)
    result["text"] = generate.generate(loaded, loaded_cfg, tokenizer, prompt, max_new_tokens)
    result["hf_text"] = hf_greedy_text(trained_cfg, a["params"], tokenizer, prompt, max_new_tokens)
    return result


PIPELINE = ["model.preset=gpt-tiny", "model.vocab_size=8000", "model.max_position_embeddings=64",
            "model.num_layers=4", "model.hidden_dropout=0", "model.attention_dropout=0",
            "data.seq_length=32", "data.num_workers=0", "train.micro_batch_size=4",
            "train.gradient_accumulation_steps=2", "train.train_steps=3", "train.lr=1e-3",
            "train.warmup_steps=1", "train.progress_bar=false", "parallel.zero_stage=1"]


def train_and_gather(shards: str, runs: list[list[str]]) -> list[dict]:
    """Train once per override list; each run's per-step losses and the whole model's parameters
    under their ordinary names (gathered over TP and PP), so layouts can be compared."""
    init_distributed()
    return [gathered_training_run(load_config(None, PIPELINE + [f"data.path={shards}"] + overrides))
            for overrides in runs]
