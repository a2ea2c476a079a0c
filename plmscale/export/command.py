"""``plmscale export``: a checkpoint directory of any TP x PP x ZeRO 0-2 layout -> a Hugging Face
folder that ``transformers``' Auto classes load with no other code.

    plmscale export --checkpoint runs/bert_demo/checkpoints --output exported/bert_demo
    python launch/export.py --checkpoint ... --output ...          (the same, without installing)
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plmscale export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="train.save_dir of a run (holds 'latest' and step directories)")
    parser.add_argument("--tag", default=None, help="checkpoint tag, e.g. step300 (default: latest)")
    parser.add_argument("--output", required=True, help="folder to write (created if absent)")
    parser.add_argument("--tokenizer", default=None,
                        help="sentencepiece model or tokenizer.json (default: the checkpoint's own copy)")
    return parser.parse_args(argv)


def export(checkpoint: str | Path, output: str | Path, tag: str | None = None,
           tokenizer: str | Path | None = None) -> list[Path]:
    """Export one checkpoint; returns the HF folders written (one process)."""
    from plmscale.export.hf import hf_export_spec, write_hf_folder
    from plmscale.export.shards import (checkpoint_tag, read_full_tensors, saved_config,
                                        tokenizer_file)
    tag = checkpoint_tag(checkpoint, tag)
    cfg = saved_config(checkpoint, tag)
    hf_export_spec(cfg.model.family)  # fail before reading shards for a family HF lacks
    tokenizer = Path(tokenizer) if tokenizer else tokenizer_file(checkpoint, tag, cfg)
    if not tokenizer.is_file():
        raise FileNotFoundError(f"tokenizer model {tokenizer} not found")
    cfg, full = read_full_tensors(checkpoint, tag)
    return write_hf_folder(cfg, full, tokenizer, output)


def main(argv=None) -> int:
    warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")
    args = parse_args(argv)
    try:
        folders = export(args.checkpoint, args.output, args.tag, args.tokenizer)
    except (ValueError, FileNotFoundError) as error:
        print(f"plmscale export: {error}", file=sys.stderr)
        return 2
    for folder in folders:
        print(f"plmscale export: wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
