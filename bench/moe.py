"""Training-step throughput of a mixture-of-experts GPT against the dense GPT with the same active
parameters per token, in one run (one CPU rank, plmscale's DeepSpeed engine, ZeRO-0, fp32).

    python bench/moe.py [--experts 8] [--top-k 1,2] [--steps 10] [--record bench/RESULTS.md]

For top-k routing over experts of FFN width f, the dense model's FFN is k * f wide, so both run the
same matmul FLOPs per token outside the router; the MoE model holds E / k times the FFN parameters.
Steps of the two models are interleaved (alternating which goes first) so that machine noise hits both
alike; the ratio of median step times (MoE / dense) is the cost of routing and dispatch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

COMMON = ["model.preset=gpt-tiny", "model.num_layers=4", "model.hidden_size=256",
          "model.num_attention_heads=4", "model.vocab_size=8000", "model.max_position_embeddings=256",
          "model.hidden_dropout=0", "model.attention_dropout=0", "parallel.zero_stage=0",
          "train.grad_clip=0", "train.lr=1e-4", "train.warmup_steps=0"]


def engine_and_step(overrides: list[str], args):
    from plmscale.config import load_config
    from plmscale.families import build_model, count_parameters
    from plmscale.parallel import init_model_parallel, seed_all
    from plmscale.training.engine import build_engine
    cfg = load_config(None, COMMON + overrides + [f"train.micro_batch_size={args.batch}",
                                                  f"data.seq_length={args.seq}"])
    init_model_parallel(cfg)
    seed_all(0)
    engine = build_engine(cfg)[0]
    with torch.device("meta"):
        meta = build_model(cfg)
    counts = (count_parameters(meta, cfg.model), count_parameters(meta, cfg.model, active=True))
    ids = torch.randint(0, cfg.model.vocab_size, (args.batch, args.seq + 1),
                        generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}

    def step():
        out = engine(batch)
        engine.backward(out["loss"])
        engine.step()
    return step, counts


def bench(k: int, args) -> dict:
    f = args.expert_ffn
    runs = {"dense": engine_and_step([f"model.ffn_hidden_size={k * f}"], args),
            "moe": engine_and_step([f"model.ffn_hidden_size={f}", f"model.num_experts={args.experts}",
                                    f"model.moe_top_k={k}", "model.moe_capacity_factor=1.25"],
                                   args)}
    times = {name: [] for name in runs}
    order = list(runs)
    for i in range(args.warmup + args.steps):
        for name in (order if i % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            runs[name][0]()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    tokens = args.batch * args.seq
    return {"k": k, **{f"{n}_ms": median[n] * 1e3 for n in runs},
            **{f"{n}_tokens_per_s": tokens / median[n] for n in runs},
            **{f"{n}_params": runs[n][1] for n in runs}, "ratio": median["moe"] / median["dense"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--expert-ffn", type=int, default=512)
    parser.add_argument("--top-k", default="1,2")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--record", default=None, help="append the table to this markdown file")
    args = parser.parse_args()
    from plmscale.parallel import init_distributed
    init_distributed()
    started = datetime.now(timezone.utc)
    rows = [bench(int(k), args) for k in args.top_k.split(",")]
    load = os.getloadavg()
    lines = [f"\n### {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()}-core CPU box, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads, load average at the end "
             f"{load[0]:.1f} (shared with other jobs)\n",
             f"Command: `python bench/moe.py {' '.join(sys.argv[1:])}` (GPT, 4 layers of width 256, "
             f"{args.experts} experts of FFN {args.expert_ffn} in every layer, capacity factor 1.25, "
             f"vs dense FFN k x {args.expert_ffn}; seq {args.seq}, batch {args.batch}, "
             f"{args.steps} interleaved steps after {args.warmup} warm-up, medians; 1 rank, ZeRO-0).\n",
             "| top-k | MoE params total / active | dense params | MoE ms/step | dense ms/step | "
             "MoE tokens/s | dense tokens/s | ratio MoE/dense |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['k']} | {r['moe_params'][0]:,} / {r['moe_params'][1]:,} | "
                     f"{r['dense_params'][0]:,} | {r['moe_ms']:.0f} | {r['dense_ms']:.0f} | "
                     f"{r['moe_tokens_per_s']:.0f} | {r['dense_tokens_per_s']:.0f} | "
                     f"**{r['ratio']:.2f}** |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        with open(args.record, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
