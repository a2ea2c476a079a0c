"""Greedy text generation from a checkpoint written by launch/train.py.

    python launch/generate.py --checkpoint runs/gpt_tiny/checkpoints --prompt "The castle"
    torchrun --nproc_per_node 2 launch/generate.py --checkpoint ...   (tensor parallel over 2 ranks)

The checkpoint directory is all that is needed: it carries the resolved training config and the
tokenizer (``--tokenizer`` to use another copy). Its shards, from any TP x PP x ZeRO 0-2 layout, are
merged and re-sliced for this run's tensor-parallel size (= the number of ranks) by
``plmscale.export.shards``. How a family lays out a prompt and reads its output is its
``plmscale.export.generation.GenerationSpec``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

# megatron-core warns at import that Apex/Transformer Engine are absent; that is expected here.
warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from plmscale.config import ExperimentConfig  # noqa: E402
from plmscale.export.generation import generation_spec  # noqa: E402
from plmscale.export.shards import (inference_config, load_full_tensors,  # noqa: E402
                                    read_full_tensors, saved_config, tokenizer_file)
from plmscale.families import build_model  # noqa: E402
from plmscale.parallel import device, init_distributed, init_model_parallel  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="train.save_dir of a run (holds 'latest' and step directories)")
    parser.add_argument("--tag", default=None, help="checkpoint tag, e.g. step300 (default: latest)")
    parser.add_argument("--prompt", default="", help="text to continue (default: start a document)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--tokenizer", default=None,
                        help="sentencepiece model (default: the checkpoint's own copy)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by the deepspeed launcher")
    return parser.parse_args(argv)


def load_model(directory: str | Path, tag: str | None = None):
    """(config, model in eval mode on this rank's device) from a checkpoint, split over all ranks
    by tensor parallelism. Collective."""
    world = dist.get_world_size()
    saved = saved_config(directory, tag)
    heads, ffn = saved.model.num_attention_heads, saved.model.ffn_hidden_size
    if heads % world or ffn % world:
        raise ValueError(f"cannot split this model over {world} ranks: model.num_attention_heads="
                         f"{heads} and ffn_hidden_size={ffn} must be divisible by the rank count")
    cfg = inference_config(saved, tensor_parallel_size=world)
    init_model_parallel(cfg)
    _, full = read_full_tensors(directory, tag)
    model = build_model(cfg)
    load_full_tensors(model, full, cfg.model.vocab_size)
    return cfg, model.to(device()).eval()


def tokenizer_path(directory: str | Path, override: str | None = None,
                   tag: str | None = None) -> Path:
    """``override``, else the checkpoint's own copy of the run's tokenizer."""
    return Path(override) if override else tokenizer_file(directory, tag)


def generate(model, cfg: ExperimentConfig, tokenizer: Path, prompt: str,
             max_new_tokens: int) -> str:
    """The greedy output for ``prompt`` as text, up to eos (see ``GenerationSpec.text``).
    Collective over the TP group."""
    import sentencepiece as spm

    from plmscale.data.tokenizer import SpecialTokens
    spec = generation_spec(cfg.model.family)
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    tokens = SpecialTokens.from_model(tokenizer)
    ids = torch.tensor([spec.prompt_ids(sp, tokens, prompt)], device=device())
    new = model.greedy_generate(ids, max_new_tokens, eos_id=tokens.eos)[0].tolist()
    if tokens.eos in new:
        new = new[:new.index(tokens.eos)]
    return spec.text(sp, prompt, new)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    init_distributed()
    try:
        generation_spec(saved_config(args.checkpoint, args.tag).model.family)
        cfg, model = load_model(args.checkpoint, args.tag)
        tokenizer = tokenizer_path(args.checkpoint, args.tokenizer, args.tag)
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
