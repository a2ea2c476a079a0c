"""Activation memory of one training step per attention backend: GPT-2 small (12 x 768), sequence
1024, batch 1, fp32 on the CPU, in one run.

    python bench/attention_memory.py [--seq 1024] [--attention-dropout 0 0.1] [--record bench/RESULTS.md]

What is measured: the bytes autograd saves for the backward pass during the forward (a
``saved_tensors_hooks`` pair sees every saved tensor; each storage is counted once, parameters
left out), which is the
activation memory the step holds at its peak; and among them the [.., s, s] tensors (scores,
probabilities, dropout masks) and their bytes. ``sdpa`` keeps none of those where PyTorch's flash
kernel runs: on a GPU always, on the CPU only without attention dropout (the CPU flash kernel has no
dropout, so SDPA falls back to its math path that materialises the probabilities).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from train_step import emit  # noqa: E402

BACKENDS = ("sdpa", "fused-softmax")


def saved_activations(backend: str, seq: int, attention_dropout: float) -> dict:
    """Bytes saved for backward by one GPT-2 small forward (and those of [.., seq, seq] tensors)."""
    from plmscale.config import load_config
    from plmscale.parallel import init_model_parallel, seed_all
    from plmscale.training.engine import build_initialised_model
    cfg = load_config(None, ["model.preset=gpt2", f"model.attention_backend={backend}",
                             f"model.attention_dropout={attention_dropout}",
                             f"data.seq_length={seq}", "train.micro_batch_size=1"])
    init_model_parallel(cfg)
    seed_all(0)
    model = build_initialised_model(cfg).train()
    ids = torch.randint(0, cfg.model.vocab_size, (1, seq + 1), generator=torch.Generator().manual_seed(0))
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}
    square: dict[int, int] = {}

    def pack(t: torch.Tensor):
        key = t.untyped_storage().data_ptr()
        if key in parameters:  # weights saved for the backward are not activations
            return t
        storages[key] = t.untyped_storage().nbytes()
        if t.dim() >= 2 and t.shape[-1] == t.shape[-2] == seq:
            square[key] = storages[key]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model({"input_ids": ids[:, :-1], "labels": ids[:, 1:]})["loss"]
    loss.backward()
    return {"bytes": sum(storages.values()), "square": len(square), "square_bytes": sum(square.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--attention-dropout", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--record", default=None, help="append the table to this markdown file")
    args = parser.parse_args()
    from plmscale.parallel import init_distributed
    init_distributed()
    started = datetime.now(timezone.utc)
    rows = []
    for dropout in args.attention_dropout:
        for backend in BACKENDS:
            r = saved_activations(backend, args.seq, dropout)
            rows.append(f"| {backend} | {dropout} | {r['bytes'] / 2**20:.0f} | {r['square']} | "
                        f"{r['square_bytes'] / 2**20:.0f} |")
            print(rows[-1], flush=True)
    emit("\n".join([
        f"\n### {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()}-core CPU box, torch {torch.__version__}\n",
        f"Command: `python bench/attention_memory.py {' '.join(sys.argv[1:])}` (GPT-2 small, seq "
        f"{args.seq}, batch 1, fp32, hidden dropout 0.1; bytes saved for backward by one forward).\n",
        "| attention backend | attention dropout | activations saved (MiB) | saved [s, s] tensors "
        "| of which [s, s] (MiB) |", "|---|---|---|---|---|", *rows]) + "\n", args.record)


if __name__ == "__main__":
    main()
