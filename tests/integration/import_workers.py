"""Rank functions of the import round trip (tests/integration/test_import.py): small random HF
models saved locally -> ``plmscale import`` at TP=2 x PP=2 -> plmscale's logits against HF's ->
20 steps of continued pretraining from the import -> export -> the exported tensors against the
run's final weights."""

from __future__ import annotations

from pathlib import Path

import torch

from export_workers import CONFIGS, OUTPUT_NAMES, REPO, _family_inputs
from plmscale.config import load_config
from plmscale.parallel import init_distributed

FAMILIES = ["bert", "roberta", "t5", "bart", "gpt"]

SMALL = ["model.num_layers=2", "model.hidden_dropout=0", "model.attention_dropout=0",
         "data.seq_length=32", "data.num_workers=0", "train.micro_batch_size=2",
         "train.gradient_accumulation_steps=2", "train.lr=1e-3", "train.warmup_steps=2",
         "train.progress_bar=false", "train.tensorboard_dir=null", "train.save_interval=0",
         "parallel.zero_stage=1"]

TP2_PP2 = ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2"]


def base_config(family: str, shards: str, layout: list[str], more: list[str] = ()):
    extra = ["model.num_decoder_layers=2"] if family in ("t5", "bart") else []
    return load_config(REPO / "configs" / f"{CONFIGS[family]}.yaml",
                       SMALL + layout + extra + [f"data.path={shards}", *more])


def save_random_hf_models(shards: str, out: str) -> None:
    """One process: for each family, an HF model of the same architecture (config through the
    export's ``hf_config``) with HF's own random initialisation, saved to ``out/<family>/hf``."""
    import transformers

    from plmscale.families import get_family
    for i, family in enumerate(FAMILIES):
        cfg = base_config(family, shards, [])
        config = get_family(family).hf_config(cfg.model)
        torch.manual_seed(100 + i)
        model = getattr(transformers, get_family(family).hf_model_class)(config)
        with torch.no_grad():  # HF zero-initialises biases and norms: make every tensor count
            for name, p in model.named_parameters():
                if p.dim() == 1:
                    p.add_(torch.randn_like(p) * 0.1)
        model.save_pretrained(Path(out) / family / "hf")


def hf_logits(out: str, text: str, tokenizer: str) -> dict:
    """One process: each saved HF model's logits on ``text`` laid out as the family's samples."""
    import transformers

    from plmscale.data.tokenizer import SpecialTokens, text_encoder
    from plmscale.families import get_family
    encode = text_encoder(tokenizer)
    tokens = SpecialTokens.from_model(tokenizer)
    result = {}
    for family in FAMILIES:
        cls = getattr(transformers, get_family(family).hf_model_class)
        model = cls.from_pretrained(Path(out) / family / "hf").eval()
        _, inputs = _family_inputs(family, encode, tokens, text)
        with torch.no_grad():
            output = model(**inputs)
        result[family] = [getattr(output, name).float() for _, name in OUTPUT_NAMES[family]]
    return result


def _final_weights(engine, cfg) -> dict[str, torch.Tensor]:
    """The live engine's parameters as full tensors under the ordinary names, on every rank
    (gathered over TP, then over pipeline stages)."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from plmscale.export.gather import full_tensors
    module = engine.module
    name = getattr(module, "canonical_name", lambda n: n)
    mine = {name(n): t for n, t in full_tensors(module, cfg.model.vocab_size).items()}
    stages = [None] * ps.get_pipeline_model_parallel_world_size()
    dist.all_gather_object(stages, mine, group=ps.get_pipeline_model_parallel_group())
    # A tied module's copy on a later stage holds the tensors only the first stage uses
    # (position embeddings, embedding LayerNorm) untrained: the first stage's copy counts, as in
    # the checkpoint reader.
    full = {}
    for stage in stages:
        for n, t in stage.items():
            full.setdefault(n, t)
    return full


def import_train_export(shards: str, out: str, text: str, tokenizer: str) -> dict:
    """4 ranks: per family, import at TP2 x PP2; plmscale's logits of the import (re-sliced for
    TP2); 20 steps from ``train.init_from``; export of the final checkpoint to
    ``out/<family>/exported`` (rank 0). Returns, on rank 0, {family: (logits, final weights,
    losses, model config)}."""
    import torch.distributed as dist

    from plmscale.data.tokenizer import SpecialTokens, text_encoder
    from plmscale.export.command import export
    from plmscale.export.hf_import import import_checkpoint, load_into
    from plmscale.export.shards import inference_config, read_full_tensors
    from plmscale.families import build_model
    from plmscale.parallel import init_model_parallel, seed_all
    from plmscale.training.loop import train
    init_distributed()
    encode = text_encoder(tokenizer)
    tokens = SpecialTokens.from_model(tokenizer)
    result = {}
    for family in FAMILIES:
        root = Path(out) / family
        base = base_config(family, shards, TP2_PP2)
        init_model_parallel(base)
        import_checkpoint(root / "hf", root / "imported", base)
        # plmscale's forward on the imported checkpoint, re-sliced for TP2 (x DP2)
        cfg, full = read_full_tensors(root / "imported")
        tp2 = inference_config(cfg, tensor_parallel_size=2)
        init_model_parallel(tp2)
        model = build_model(tp2).eval()
        load_into(model, full, tp2)
        ours, _ = _family_inputs(family, encode, tokens, text)
        with torch.no_grad():
            logits = model.logits(**ours)
        logits = [t.float() for t in (logits if isinstance(logits, tuple) else (logits,))]
        # continued pretraining at TP2 x PP2 from the import
        run = base_config(family, shards, TP2_PP2, [
            f"train.init_from={root / 'imported'}", "train.train_steps=20",
            f"train.save_dir={root / 'ckpt'}"] + _architecture(cfg))
        init_model_parallel(run)
        seed_all(run.train.seed)
        final = {}
        history = train(run, on_step=lambda engine, step, m: final.update(
            _final_weights(engine, run) if step == run.train.train_steps else {}))
        if dist.get_rank() == 0:
            export(root / "ckpt", root / "exported")
            result[family] = (logits, final, [h["loss"] for h in history], run.model)
        dist.barrier()
    return result


def _architecture(cfg) -> list[str]:
    """``--set`` lines for the imported model fields a base config may lack (what train.yaml
    holds)."""
    import dataclasses
    from plmscale.export.hf_import import NOT_ARCHITECTURE
    return [f"model.{f.name}={getattr(cfg.model, f.name)}" for f in dataclasses.fields(cfg.model)
            if f.name not in NOT_ARCHITECTURE and getattr(cfg.model, f.name) is not None]


def refused_models(shards: str, out: str) -> dict[str, str]:
    """One process: HF models the maps cannot represent, each read with ``read_hf_folder``;
    returns {case: error message} (or "imported" when no error was raised)."""
    import transformers

    from plmscale.export.hf_import import read_hf_folder
    from plmscale.export.inverse import HFImportError
    from plmscale.export.shards import inference_config
    from plmscale.families import get_family
    from plmscale.parallel import init_model_parallel
    init_distributed()
    base = inference_config(base_config("bert", shards, []))
    init_model_parallel(base)
    config = get_family("bert").hf_config(base.model)
    cases = {}
    untied = transformers.BertConfig(**{**config.to_dict(), "tie_word_embeddings": False})
    model = transformers.BertForPreTraining(untied)
    with torch.no_grad():
        model.cls.predictions.decoder.weight.add_(1.0)
    model.save_pretrained(Path(out) / "untied")
    relu = transformers.BertConfig(**{**config.to_dict(), "hidden_act": "relu"})
    transformers.BertForPreTraining(relu).save_pretrained(Path(out) / "relu")
    for case in ("untied", "relu"):
        try:
            read_hf_folder(Path(out) / case, base)
            cases[case] = "imported"
        except HFImportError as error:
            cases[case] = str(error)
    return cases
