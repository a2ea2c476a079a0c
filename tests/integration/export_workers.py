"""Rank functions of the export round trip (tests/integration/test_export.py): train every
HF-backed family a few steps at TP=2 x PP=2, export the checkpoints, and compute plmscale's own
logits on fixed ids for the HF side (hf_check.py, run in a fresh process) to compare."""

from __future__ import annotations

from pathlib import Path

import torch

from plmscale.config import load_config
from plmscale.parallel import init_distributed

REPO = Path(__file__).resolve().parents[2]

CONFIGS = {"bert": "bert_demo", "roberta": "roberta_tiny", "albert": "albert_tiny",
           "electra": "electra_tiny", "distilbert": "distilbert_tiny", "t5": "t5_tiny",
           "bart": "bart_tiny", "gpt": "gpt_tiny", "ernie": "ernie_tiny", "llama": "llama_tiny",
           "unilm": "unilm_tiny", "glm": "glm_tiny",
           "xlnet": "xlnet_tiny", "mpnet": "mpnet_tiny", "mixtral": "mixtral_tiny",
           "qwen2_moe": "qwen2_moe_tiny", "switch": "t5_switch_tiny"}

SMALL = ["model.num_layers=2", "model.hidden_dropout=0", "model.attention_dropout=0",
         "data.seq_length=32", "data.num_workers=0", "train.micro_batch_size=2",
         "train.gradient_accumulation_steps=2", "train.train_steps=2", "train.lr=1e-3",
         "train.warmup_steps=1", "train.progress_bar=false", "train.tensorboard_dir=null",
         "train.save_interval=0", "parallel.zero_stage=1"]

LAYOUT = ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2"]
MOE_FAMILIES = ("mixtral", "qwen2_moe", "switch")
# Expert parallel 2 x data parallel 4 (TP 2 x EP 2 cannot save: plmscale.training.checkpoint);
# HF's MoE classes never drop tokens: their logits equal plmscale's dropless model.
EXPERT_LAYOUT = ["parallel.tensor_model_parallel_size=1", "parallel.pipeline_model_parallel_size=1",
                 "model.expert_model_parallel_size=2", "model.moe_dropless=true"]


def family_config(family: str, shards: str, save_dir: Path, layout: list[str], teacher=None):
    extra = [f"objective.distillation_teacher_path={teacher}"] if family == "distilbert" else []
    if family in ("t5", "bart", "switch"):
        extra.append("model.num_decoder_layers=2")
    return load_config(REPO / "configs" / f"{CONFIGS[family]}.yaml",
                       SMALL + layout + extra + [f"data.path={shards}", f"train.save_dir={save_dir}"])


def train_families(shards: str | dict, out: str, families: list[str], layouts: dict,
                   more: list[str] = ()) -> None:
    """Train each family (its layout from ``layouts``, default TP=2 x PP=2; ``shards`` one shard
    directory or one per family; ``more`` config overrides) into ``out/<family>/ckpt``;
    DistilBERT's teacher is the BERT checkpoint just written (train "bert" first)."""
    from plmscale.parallel import init_model_parallel, seed_all
    from plmscale.training.loop import train
    init_distributed()
    for family in families:
        teacher = Path(out) / "bert" / "ckpt"
        data = shards[family] if isinstance(shards, dict) else shards
        cfg = family_config(family, data, Path(out) / family / "ckpt",
                            list(layouts.get(family, LAYOUT)) + list(more), teacher)
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)
        train(cfg)


def _additive(hidden: torch.Tensor) -> torch.Tensor:
    """A boolean mask (True = hidden) as HF's float additive mask (transformers 5 ignores boolean
    4-D masks in eager attention)."""
    return torch.zeros(hidden.shape).masked_fill(hidden, torch.finfo(torch.float32).min)


def _unilm_inputs(ids: list[int], tokens) -> tuple[dict, dict]:
    """One sample per UniLM objective (bidirectional, seq2seq, left-to-right, right-to-left); HF
    gets each one's mask as a float [b, 1, s, s] mask."""
    from plmscale.objectives.unified_lm import MASK_KINDS, unilm_attention_mask
    x = torch.tensor([[tokens.cls] + ids[:10] + [tokens.sep] + ids[10:] + [tokens.sep]] * 4)
    types = torch.tensor([[first] * 12 + [second] * (x.shape[1] - 12)
                          for first, second in MASK_KINDS.values()])
    mask = torch.ones_like(x)
    ours = {"input_ids": x, "token_type_ids": types, "attention_mask": mask}
    return ours, {**ours, "attention_mask": _additive(unilm_attention_mask(types, mask))}


def _glm_inputs(ids: list[int], tokens) -> tuple[dict, dict]:
    """A blank-infilling sample (two spans); HF gets the block positions separately (hf_check.py
    adds them to the word embeddings) and the mask as a float [b, 1, s, s] mask."""
    import numpy as np

    from plmscale.objectives.blank_infilling import BlankTokens, blank_sample, glm_attention_mask
    blank = BlankTokens(cls=tokens.cls, mask=tokens.mask, start=tokens.start, end=tokens.eos,
                        pad=tokens.pad)
    sample = blank_sample(np.array(ids), [(3, 6), (10, 12)], blank, 32, np.random.default_rng(0))
    ours = {k: torch.from_numpy(np.asarray(sample[k]))[None]
            for k in ("input_ids", "position_ids", "block_position_ids", "part_a")}
    ours["part_a"] = ours["part_a"].view(1)
    hf = {k: ours[k] for k in ("input_ids", "position_ids", "block_position_ids")}
    return ours, {**hf, "attention_mask": _additive(glm_attention_mask(ours["part_a"], 32))}


def _family_inputs(family: str, encode, tokens, text: str) -> tuple[dict, dict]:
    """(plmscale ``logits`` kwargs, HF forward kwargs) for ``text`` (``encode``: text -> ids) laid
    out as the family's samples."""
    ids = encode(text)[:20]
    if family == "unilm":
        return _unilm_inputs(ids, tokens)
    if family == "glm":
        return _glm_inputs(ids, tokens)
    if family in ("bert", "albert", "electra", "distilbert", "ernie"):
        x = torch.tensor([[tokens.cls] + ids + [tokens.sep]])
    elif family in ("roberta", "mpnet"):
        x = torch.tensor([[tokens.bos] + ids + [tokens.eos]])
    elif family == "xlnet":  # A [SEP] [CLS], the last 3 words predicted in a permuted order
        x = torch.tensor([ids + [tokens.sep, tokens.cls]])
        n = x.shape[1]
        targets = torch.tensor([n - 5, n - 3, n - 4])
        perm = torch.zeros(1, n, n)
        perm[0, :, targets] = 1.0  # nobody sees a target but the targets after it
        for k, t in enumerate(targets):
            perm[0, targets[k + 1:], t] = 0.0
        kw = {"input_ids": x, "token_type_ids": torch.zeros_like(x), "perm_mask": perm,
              "target_mapping": torch.nn.functional.one_hot(targets, n).float()[None]}
        return kw, kw
    elif family in ("gpt", "llama", "mixtral", "qwen2_moe"):
        return {"input_ids": torch.tensor([[tokens.eos] + ids])}, {"input_ids": torch.tensor([[tokens.eos] + ids])}
    else:  # encoder-decoders: the text as input, its head as decoder input
        x = torch.tensor([ids + [tokens.eos]])
        start = tokens.pad if family in ("t5", "switch") else tokens.eos
        dec = torch.tensor([[start] + ids[:6]])
        kw = {"input_ids": x, "attention_mask": torch.ones_like(x), "decoder_input_ids": dec}
        return kw, kw
    mask = torch.ones_like(x)
    ours = {"input_ids": x, "attention_mask": mask}
    hf = {"input_ids": x, "attention_mask": mask}
    if family in ("bert", "albert", "electra", "ernie"):
        ours["token_type_ids"] = hf["token_type_ids"] = torch.zeros_like(x)
    if family == "ernie":  # the structure-aware task row, so a dropped task embedding shows
        ours["task_type_ids"] = hf["task_type_ids"] = torch.ones_like(x)
    return ours, hf


# plmscale ``logits`` outputs -> (HF subfolder, HF output attribute), in order.
OUTPUT_NAMES = {
    "bert": [("", "prediction_logits"), ("", "seq_relationship_logits")],
    "ernie": [("", "prediction_logits"), ("", "seq_relationship_logits")],
    "albert": [("", "prediction_logits"), ("", "sop_logits")],
    "electra": [("", "logits"), ("generator", "logits")],
    "roberta": [("", "logits")], "distilbert": [("", "logits")], "t5": [("", "logits")],
    "bart": [("", "logits")], "gpt": [("", "logits")], "llama": [("", "logits")],
    "unilm": [("", "prediction_logits"), ("", "seq_relationship_logits")], "glm": [("", "logits")],
    "xlnet": [("", "logits")], "mpnet": [("", "logits")], "mixtral": [("", "logits")],
    "qwen2_moe": [("", "logits")], "switch": [("", "logits")],
}


def export_and_logits(out: str, families: list[str], text: str) -> dict:
    """One process: ``plmscale export`` (through the console-script entry) of each family's
    checkpoint to ``out/<family>/hf``, then plmscale's logits on ``text`` from the same checkpoint
    (merged, re-sliced for TP=1), saved with the inputs as ``out/<family>/expected.pt``."""
    from plmscale.cli import main
    from plmscale.data.tokenizer import SpecialTokens, text_encoder
    from plmscale.export.shards import (inference_config, load_full_tensors, read_full_tensors,
                                        tokenizer_file)
    from plmscale.families import build_model
    from plmscale.parallel import init_model_parallel
    init_distributed()
    codes = {}
    for family in families:
        ckpt, hf = Path(out) / family / "ckpt", Path(out) / family / "hf"
        codes[family] = main(["export", "--checkpoint", str(ckpt), "--output", str(hf)])
        cfg, full = read_full_tensors(ckpt)
        cfg = inference_config(cfg)
        init_model_parallel(cfg)
        model = build_model(cfg).eval()
        load_full_tensors(model, full, cfg.model.vocab_size)
        tokenizer = tokenizer_file(ckpt)
        encode = text_encoder(tokenizer)
        ours, hf_inputs = _family_inputs(family, encode, SpecialTokens.from_model(tokenizer), text)
        logits = model.logits(**ours)
        logits = logits if isinstance(logits, tuple) else (logits,)
        expected = [(folder, name, tensor.float()) for (folder, name), tensor
                    in zip(OUTPUT_NAMES[family], logits)]
        saved = {"inputs": hf_inputs, "outputs": expected}
        if family == "glm":  # blank filling: continue "[CLS] text [gMASK]" after [START]
            t = SpecialTokens.from_model(tokenizer)
            part_a = torch.tensor([[t.cls] + encode(text)[:8] + [t.gmask]])
            saved["fill"] = {"part_a": part_a, "start": t.start,
                             "tokens": model.fill_blank(part_a, 9, t.start, 6)[0].tolist()}
        torch.save(saved, Path(out) / family / "expected.pt")
    return codes


def export_then_import(out: str, families: list[str], text: str, bert_shards: str,
                       more: list[str]) -> tuple[dict, dict]:
    """``export_and_logits``, then ``plmscale import`` (``import_checkpoint``, TP=1) of the exported
    BERT on ``bert_shards`` into ``out/bert/imported``; returns (export exit codes, {"tokenizer":
    the import's tokenizer copy, "worst": its largest weight difference from the trained BERT})."""
    from plmscale.export.hf_import import import_checkpoint
    from plmscale.export.shards import read_full_tensors
    from plmscale.parallel import init_model_parallel
    codes = export_and_logits(out, families, text)
    root = Path(out) / "bert"
    base = load_config(REPO / "configs" / f"{CONFIGS['bert']}.yaml",
                       SMALL + list(more) + [f"data.path={bert_shards}",
                                             "parallel.tensor_model_parallel_size=1",
                                             "parallel.pipeline_model_parallel_size=1"])
    init_model_parallel(base)
    import_checkpoint(root / "hf", root / "imported", base)
    _, imported = read_full_tensors(root / "imported")
    _, trained = read_full_tensors(root / "ckpt")
    worst = max((imported[n] - trained[n]).abs().max().item() for n in trained)
    return codes, {"tokenizer": (root / "imported" / "step0" / "tokenizer.json").read_bytes(),
                   "worst": worst}


def train_zero_stages(shards: str, out: str, stages: list[int]) -> list[float]:
    """GPT at TP=2 x DP=2, the same run once per ZeRO stage, each saved to ``out/zero<stage>``;
    returns the learning rates of the steps."""
    from plmscale.parallel import init_model_parallel, seed_all
    from plmscale.training.loop import train
    init_distributed()
    for stage in stages:
        cfg = load_config(REPO / "configs" / "gpt_tiny.yaml",
                          SMALL + ["parallel.tensor_model_parallel_size=2", f"data.path={shards}",
                                   f"parallel.zero_stage={stage}",
                                   f"train.save_dir={Path(out) / f'zero{stage}'}"])
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)
        history = train(cfg)
    return [h["lr"] for h in history]


def read_checkpoints(directories: list[str]) -> list[dict]:
    """Each checkpoint's full tensors, read in one process (no process group set up first)."""
    from plmscale.export.shards import read_full_tensors
    return [read_full_tensors(d)[1] for d in directories]
