"""Greedy text generation from a checkpoint written by launch/train.py.

    python launch/generate.py --checkpoint runs/gpt_tiny/checkpoints --prompt "The castle"
    torchrun --nproc_per_node 2 launch/generate.py --checkpoint ...   (TP layout it was saved with)

The resolved training config travels in the checkpoint's client state, so nothing but the directory is
needed. On one process, a checkpoint saved with tensor parallelism is merged from its per-TP-rank
files; on as many ranks as its TP size (or a multiple), DeepSpeed's ``load_checkpoint`` loads each
rank's slice into an engine of the saved layout. The prompt is encoded with the tokenizer of the
shard directory the model was trained on (``--tokenizer`` to use another copy).

A family decodes through its model's ``greedy_generate(prompt_ids, max_new_tokens, eos_id)``, which
returns the new tokens; how a prompt becomes ids is ``prompt_ids`` below (per family).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

# megatron-core warns at import that Apex/Transformer Engine are absent; that is expected here.
warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from plmscale.config import ExperimentConfig, load_config  # noqa: E402
from plmscale.families import build_model  # noqa: E402
from plmscale.parallel import (DeepSpeedMpu, device, init_distributed,  # noqa: E402
                               init_model_parallel)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="train.save_dir of a run (holds 'latest' and step directories)")
    parser.add_argument("--tag", default=None, help="checkpoint tag, e.g. step300 (default: latest)")
    parser.add_argument("--prompt", default="", help="text to continue (default: start a document)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--tokenizer", default=None,
                        help="sentencepiece model (default: the one of the run's data.path)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by the deepspeed launcher")
    return parser.parse_args(argv)


def checkpoint_tag(directory: Path, tag: str | None) -> str:
    if tag is not None:
        return tag
    latest = directory / "latest"
    if not latest.is_file():
        raise FileNotFoundError(f"{directory} holds no 'latest' file: pass the train.save_dir of a "
                                f"finished run, or --tag")
    return latest.read_text().strip()


def model_states(directory: Path, tag: str, tp_rank: int) -> dict:
    path = directory / tag / f"mp_rank_{tp_rank:02d}_model_states.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (pipeline-parallel checkpoints are not "
                                f"supported by this script yet)")
    return torch.load(path, map_location="cpu", weights_only=False)


def config_from_dict(values: dict) -> ExperimentConfig:
    """Inverse of ``plmscale.config.config_to_dict``."""
    cfg = ExperimentConfig()
    for section in dataclasses.fields(ExperimentConfig):
        current = getattr(cfg, section.name)
        setattr(cfg, section.name, dataclasses.replace(current, **values.get(section.name, {})))
    return cfg


def saved_config(directory: Path, tag: str) -> ExperimentConfig:
    cfg = config_from_dict(model_states(directory, tag, 0)["config"])
    if cfg.parallel.pipeline_model_parallel_size > 1:
        raise ValueError("pipeline-parallel checkpoints are not supported by generate.py yet")
    if cfg.parallel.zero_stage == 3:
        raise ValueError("this checkpoint was saved with ZeRO-3 (weights partitioned over data-"
                         "parallel ranks); consolidate it with DeepSpeed's zero_to_fp32.py first")
    # Inference: no dropout, fp32 weights whatever the training precision.
    cfg.model.hidden_dropout = cfg.model.attention_dropout = 0.0
    cfg.train.precision = "fp32"
    return cfg


def merge_tensor_parallel(model: torch.nn.Module, cfg: ExperimentConfig, directory: Path,
                          tag: str, saved_tp: int) -> None:
    """Load a TP=``saved_tp`` checkpoint into a TP=1 ``model``: partitioned tensors are concatenated
    along their partition dimension; vocabulary padding is re-cut for TP=1."""
    states = [model_states(directory, tag, r)["module"] for r in range(saved_tp)]
    merged = {}
    for name, param in model.named_parameters():
        pieces = [state[name] for state in states]
        if getattr(param, "tensor_model_parallel", False):
            tensor = torch.cat(pieces, dim=param.partition_dim)
        else:
            tensor = pieces[0]
        if getattr(param, "vocab_padded", False):
            rows = cfg.model.vocab_size
            padded = torch.zeros(param.shape, dtype=tensor.dtype)
            padded[:rows] = tensor[:rows]
            tensor = padded
        merged[name] = tensor
    model.load_state_dict(merged, strict=True)


def load_model(directory: str | Path, tag: str | None = None):
    """(config, model in eval mode on this rank's device) from a checkpoint. Collective."""
    directory = Path(directory)
    tag = checkpoint_tag(directory, tag)
    cfg = saved_config(directory, tag)
    saved_tp = cfg.parallel.tensor_model_parallel_size
    world = dist.get_world_size()
    if world == 1 and saved_tp > 1:
        cfg.parallel.tensor_model_parallel_size = 1
        init_model_parallel(cfg)
        model = build_model(cfg)
        merge_tensor_parallel(model, cfg, directory, tag, saved_tp)
        return cfg, model.to(device()).eval()
    if world % saved_tp:
        raise ValueError(f"the checkpoint was saved with tensor_model_parallel_size={saved_tp}; run "
                         f"on 1 process or on a multiple of {saved_tp} ranks (got {world})")
    import deepspeed
    init_model_parallel(cfg)
    model = build_model(cfg).to(device())
    engine, _, _, _ = deepspeed.initialize(
        model=model, mpu=DeepSpeedMpu(), dist_init_required=False,
        config={"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                "zero_optimization": {"stage": 0}, "steps_per_print": 10**9})
    path, _ = engine.load_checkpoint(str(directory), tag=tag, load_module_strict=True,
                                     load_optimizer_states=False, load_lr_scheduler_states=False)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load {directory}/{tag}")
    return cfg, engine.module.eval()


def tokenizer_path(cfg: ExperimentConfig, override: str | None) -> Path:
    if override:
        return Path(override)
    manifest = Path(cfg.data.path) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"the run's data.path {cfg.data.path} has no manifest.json (moved?); "
                                f"pass --tokenizer PATH/tokenizer.model")
    return Path(cfg.data.path) / json.loads(manifest.read_text())["tokenizer"]["file"]


def prompt_ids(family: str, sp, tokens, text: str) -> list[int]:
    """The encoder (or decoder-only) input ids of ``text``, laid out as the family's training
    samples: GPT continues a document, and its packed stream puts eos before every document; T5's
    span-corruption inputs end in eos; BART's denoising inputs are ``<s> text </s>``."""
    ids = sp.encode(text) if text else []
    if family == "gpt":
        return [tokens.eos] + ids
    if family == "bart":
        return [tokens.bos] + ids + [tokens.eos]
    return ids + [tokens.eos]  # t5 (and any other encoder-decoder)


def generate(model, cfg: ExperimentConfig, tokenizer: Path, prompt: str,
             max_new_tokens: int) -> str:
    """The greedy output for ``prompt`` as text, up to eos: for a decoder the prompt followed by
    its continuation, for an encoder-decoder the decoder's output. Collective over the TP group."""
    import sentencepiece as spm

    from plmscale.data.tokenizer import SpecialTokens
    if not hasattr(model, "greedy_generate"):
        raise ValueError(f"model.family {cfg.model.family!r} has no greedy decoding yet "
                         f"(its model needs a greedy_generate method)")
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    tokens = SpecialTokens.from_model(tokenizer)
    ids = torch.tensor([prompt_ids(cfg.model.family, sp, tokens, prompt)], device=device())
    new = model.greedy_generate(ids, max_new_tokens, eos_id=tokens.eos)[0].tolist()
    if tokens.eos in new:
        new = new[:new.index(tokens.eos)]
    # A decoder continues its prompt: decode both together so the pieces join as in the text.
    context = sp.encode(prompt) if cfg.model.family == "gpt" and prompt else []
    return sp.decode(context + new)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    init_distributed()
    try:
        cfg, model = load_model(args.checkpoint, args.tag)
        tokenizer = tokenizer_path(cfg, args.tokenizer)
    except (ValueError, FileNotFoundError) as error:
        print(f"plmscale: {error}", file=sys.stderr)
        return 2
    text = generate(model, cfg, tokenizer, args.prompt, args.max_new_tokens)
    if dist.get_rank() == 0:
        print(text, flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
