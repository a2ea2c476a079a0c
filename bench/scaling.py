"""Scaling sweep: tokens/s and peak memory per rank of a fixed GPT over the layouts this machine can
run (world 1, 2, 4: DP, TP, PP and ZeRO stages), each against plmscale.perf's prediction; weak- and
strong-scaling tables and PNG plots.

    python bench/scaling.py [--rounds 2 --steps 4] [--record bench/RESULTS.md]

Each layout is a separate ``torchrun`` job (real gloo ranks, DeepSpeed engine, one thread per rank);
the sweep goes round-robin over the layouts ``--rounds`` times so machine noise hits all alike, and
the median step time per layout counts. Memory on CPU is each rank's peak RSS growth over the
training steps (from just after the engine is built: gradients, Adam moments, activations), against
the predicted gradients + optimizer + activations; on a GPU it is CUDA's max allocated against the
whole prediction.

Prediction on CPU: the compute rate (FLOP/s of one rank on one core) is calibrated by the world-1
run and the gloo all-reduce bandwidth is measured by each multi-rank job; plmscale.perf's
step-time model then predicts every other layout, with ranks sharing the cores (``--cores``).
On a GPU pass ``--gpu H100`` (etc.) to predict from the named profile instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = ["model.preset=gpt-tiny", "model.num_layers=4", "model.hidden_size=256",
         "model.num_attention_heads=4", "model.ffn_hidden_size=1024", "model.vocab_size=8000",
         "model.max_position_embeddings=128", "model.hidden_dropout=0", "model.attention_dropout=0",
         "data.seq_length=128", "train.micro_batch_size=4", "train.precision=fp32"]
GLOBAL_BATCH = 16  # strong scaling: sequences per optimiser step, whatever the layout

# name, world, tp, pp, zero, kind ("strong": global batch fixed; "weak": per-DP-rank batch fixed)
LAYOUTS = [
    ("1 rank", 1, 1, 1, 0, "strong"),
    ("DP2 ZeRO-0", 2, 1, 1, 0, "strong"), ("DP2 ZeRO-1", 2, 1, 1, 1, "strong"),
    ("DP2 ZeRO-2", 2, 1, 1, 2, "strong"), ("DP2 ZeRO-3", 2, 1, 1, 3, "strong"),
    ("TP2", 2, 2, 1, 0, "strong"), ("PP2", 2, 1, 2, 0, "strong"),
    ("DP4 ZeRO-1", 4, 1, 1, 1, "strong"), ("TP2 x DP2 ZeRO-1", 4, 2, 1, 1, "strong"),
    ("TP2 x PP2", 4, 2, 2, 0, "strong"), ("PP2 x DP2 ZeRO-1", 4, 1, 2, 1, "strong"),
    ("TP4", 4, 4, 1, 0, "strong"),
    ("weak DP2 ZeRO-1", 2, 1, 1, 1, "weak"), ("weak DP4 ZeRO-1", 4, 1, 1, 1, "weak"),
]


def overrides(world: int, tp: int, pp: int, zero: int, kind: str) -> list[str]:
    dp = world // (tp * pp)
    accumulation = GLOBAL_BATCH // (4 * dp) if kind == "strong" else GLOBAL_BATCH // 4
    return MODEL + [f"parallel.tensor_model_parallel_size={tp}",
                    f"parallel.pipeline_model_parallel_size={pp}", f"parallel.zero_stage={zero}",
                    f"train.gradient_accumulation_steps={accumulation}"]


# -- one layout, on every rank -------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args) -> None:
    import warnings
    warnings.filterwarnings("ignore")
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    from plmscale.config import load_config
    from plmscale.parallel import init_distributed, init_model_parallel, seed_all
    from plmscale.training.engine import build_engine
    cfg = load_config(None, json.loads(args.worker))
    init_distributed()
    init_model_parallel(cfg)
    seed_all(0)
    world = dist.get_world_size()
    bandwidth = None
    if world > 1:  # gloo all-reduce bus bandwidth: 2(n-1)/n x bytes / time
        buffer = torch.ones(2**21)
        dist.all_reduce(buffer)
        start = time.perf_counter()
        for _ in range(3):
            dist.all_reduce(buffer)
        bandwidth = 3 * 2 * (world - 1) / world * buffer.numel() * 4 / (time.perf_counter() - start)
    on_gpu = torch.cuda.is_available()
    engine, _ = build_engine(cfg)
    # GPU: CUDA's count from zero covers everything. CPU: RSS also grows by the code DeepSpeed
    # loads while building the engine, so measure from after the build: what the steps add
    # (gradients, optimizer moments, activations); the model states the build allocates are
    # counted tensor by tensor in tests/parallel/test_perf_memory_states.py.
    baseline = 0 if on_gpu else _rss()
    t = cfg.train
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg.model.vocab_size, (t.micro_batch_size, cfg.data.seq_length + 1),
                           generator=g)
    batch = {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}
    piped = cfg.parallel.pipeline_model_parallel_size > 1

    def step():
        if piped:
            engine.train_batch(iter([engine.module.split_batch(batch)] * t.gradient_accumulation_steps))
            return
        for _ in range(t.gradient_accumulation_steps):
            engine.backward(engine(batch)["loss"])
            engine.step()

    times = []
    for i in range(args.warmup + args.steps):
        dist.barrier()
        start = time.perf_counter()
        step()
        dist.barrier()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if on_gpu
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - baseline
    stage = int(getattr(engine.module, "stage_id", 0)) if piped else 0
    gathered = [None] * world
    dist.all_gather_object(gathered, {"memory": peak, "stage": stage})
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps({"step_times": times, "ranks": gathered,
                                      "bandwidth": bandwidth}), flush=True)
    dist.destroy_process_group()


# -- the sweep -----------------------------------------------------------------------------------
def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, settings: list[str], args) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world),
               "--master_port", str(_free_port()), __file__, "--worker", json.dumps(settings),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"layout {settings[-4:]} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def predict(settings: list[str], world: int, rate: float, bandwidth: float, cores: int,
            gpu_name: str | None) -> tuple[float, list[float]]:
    """(predicted step seconds, predicted bytes per pipeline stage) of a layout."""
    from plmscale.config import load_config
    from plmscale.perf import Layout, gpu_profile, memory_per_rank
    from plmscale.perf.gpus import GPUProfile
    from plmscale.perf.step_time import estimate_step
    cfg = load_config(None, settings)
    layout = Layout.of(cfg, world)
    if gpu_name:
        profile, share = gpu_profile(gpu_name), 1.0
    else:  # one core per rank until the ranks outnumber the cores; memory traffic not limiting
        profile = GPUProfile("this CPU", {"fp32": rate}, 0, 1e15, bandwidth, bandwidth, world,
                             "calibrated by the world-1 run of this sweep")
        share = max(1.0, world / cores)
    estimate = estimate_step(cfg, layout, profile, efficiency=1.0)
    compute = (estimate.compute + estimate.bubble) * share
    step = compute + estimate.tensor_parallel + estimate.pipeline + estimate.data_parallel
    ranks = memory_per_rank(cfg, layout, gpu=bool(gpu_name))
    memory = [r.total if gpu_name else r.gradients + r.optimizer + r.activations for r in ranks]
    return step, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--gpu", default=None, help="predict from this GPU profile (on a GPU box)")
    parser.add_argument("--only", default=None, help="comma-separated layout names (a subset)")
    parser.add_argument("--out", default=str(REPO / "bench"), help="where the PNG plots go")
    parser.add_argument("--record", default=None, help="append the tables to this markdown file")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    layouts = [l for l in LAYOUTS if not args.only or l[0] in args.only.split(",")]
    runs: dict[str, list[dict]] = {l[0]: [] for l in layouts}
    started = datetime.now(timezone.utc)
    for round_ in range(args.rounds):
        for name, world, tp, pp, zero, kind in layouts:
            result = launch(world, overrides(world, tp, pp, zero, kind), args)
            runs[name].append(result)
            print(f"round {round_ + 1} {name}: median step "
                  f"{statistics.median(result['step_times']):.3f} s", flush=True)
    load = os.getloadavg()
    rows = summarise(layouts, runs, args)
    text = report(rows, args, started, load)
    print(text)
    plot(rows, Path(args.out))
    if args.record:
        with open(args.record, "a") as f:
            f.write("\n" + text)


def summarise(layouts, runs, args) -> list[dict]:
    from plmscale.perf import step_flops
    from plmscale.config import load_config
    single = next(l for l in layouts if l[1] == 1)
    base_settings = overrides(*single[1:])
    base_step = statistics.median(t for r in runs[single[0]] for t in r["step_times"])
    flops = step_flops(load_config(None, base_settings)).per_step
    rate = flops / base_step  # FLOP/s of one rank on one core, this sweep
    bandwidths = [r["bandwidth"] for rs in runs.values() for r in rs if r["bandwidth"]]
    bandwidth = statistics.median(bandwidths) if bandwidths else 1e9
    rows = []
    for name, world, tp, pp, zero, kind in layouts:
        settings = overrides(world, tp, pp, zero, kind)
        step = statistics.median(t for r in runs[name] for t in r["step_times"])
        dp = world // (tp * pp)
        sequences = GLOBAL_BATCH if kind == "strong" else GLOBAL_BATCH * dp
        predicted_step, predicted_memory = predict(settings, world, rate, bandwidth, args.cores,
                                                   args.gpu)
        ranks = runs[name][-1]["ranks"]
        measured = [r["memory"] for r in ranks]
        predicted = [predicted_memory[r["stage"]] for r in ranks]
        rows.append(dict(name=name, world=world, kind=kind, step=step,
                         tokens_per_s=sequences * 128 / step, predicted_step=predicted_step,
                         predicted_tokens_per_s=sequences * 128 / predicted_step,
                         memory=max(measured), predicted_memory=max(predicted),
                         memory_errors=[m / p - 1 for m, p in zip(measured, predicted)]))
    return rows


def report(rows, args, started, load) -> str:
    import platform
    import torch
    machine = (f"{os.cpu_count()}-core {platform.machine()} CPU, Linux {platform.release()}, torch "
               f"{torch.__version__}, one thread per rank; load average at the end "
               f"{load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} (the box is shared with other jobs)")
    command = "python bench/scaling.py " + " ".join(a for a in sys.argv[1:])
    base = rows[0]["tokens_per_s"]
    out = [f"## Scaling sweep (bench/scaling.py)\n",
           f"Date: {started:%Y-%m-%d %H:%M} UTC. Machine: {machine}.",
           f"Command: `{command.strip()}` ({args.rounds} interleaved rounds x {args.steps} measured "
           f"steps per layout, medians). Model: GPT, 4 layers, hidden 256, 4 heads, vocab 8000, "
           f"seq 128, micro-batch 4, fp32, AdamW. Strong scaling: {GLOBAL_BATCH} sequences per "
           f"step for every layout; weak: {GLOBAL_BATCH} per data-parallel rank.\n",
           "| layout | ranks | scaling | step s | tokens/s | speed-up vs 1 rank | predicted tokens/s "
           "| time error | peak MiB/rank (measured) | predicted MiB/rank | memory error per rank |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        errors = ", ".join(f"{e:+.0%}" for e in r["memory_errors"])
        out.append(f"| {r['name']} | {r['world']} | {r['kind']} | {r['step']:.3f} | "
                   f"{r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / base:.2f} | "
                   f"{r['predicted_tokens_per_s']:,.0f} | {r['step'] / r['predicted_step'] - 1:+.0%} | "
                   f"{r['memory'] / 2**20:.0f} | {r['predicted_memory'] / 2**20:.0f} | {errors} |")
    out.append("\nPlots: [strong scaling](scaling_strong.png), [weak scaling](scaling_weak.png), "
               "[memory per rank](scaling_memory.png).\n")
    return "\n".join(out)


def plot(rows, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for kind in ("strong", "weak"):
        chosen = [r for r in rows if r["kind"] == kind or r["world"] == 1]
        fig, ax = plt.subplots(figsize=(9, 4.5))
        x = range(len(chosen))
        ax.bar([i - 0.2 for i in x], [r["tokens_per_s"] for r in chosen], 0.4, label="measured")
        ax.bar([i + 0.2 for i in x], [r["predicted_tokens_per_s"] for r in chosen], 0.4,
               label="predicted (plmscale.perf)")
        ax.set_xticks(list(x), [r["name"] for r in chosen], rotation=30, ha="right")
        ax.set_ylabel("tokens/s")
        ax.set_title(f"{kind} scaling, GPT 4x256 on CPU (gloo)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"scaling_{kind}.png", dpi=100)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["memory"] / 2**20 for r in rows], 0.4, label="measured peak")
    ax.bar([i + 0.2 for i in x], [r["predicted_memory"] / 2**20 for r in rows], 0.4,
           label="predicted (plmscale.perf)")
    ax.set_xticks(list(x), [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("MiB per rank (largest rank)")
    ax.set_title("memory per rank")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scaling_memory.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
