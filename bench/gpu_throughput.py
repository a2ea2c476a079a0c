"""Training throughput and MFU on one GPU: GPT-2-medium at seq 1024, BERT-large at seq 512 and 128,
bf16, ZeRO-1, fused kernels on and off.

    python bench/gpu_throughput.py --data runs/demo/shards --out logs/throughput.json
    python bench/gpu_throughput.py --data ... --out ... --cpu-dry-run    (2-layer models, fp32, CPU)

Each case builds the model and its DeepSpeed engine through ``plmscale.training.engine.build_engine``
and draws micro-batches from the real sample pipeline (``plmscale.training.loop.build_batches``);
a few distinct micro-batches are moved to the GPU first and cycled, so the timing is of the training
step (forward, backward, ZeRO-1 bf16 optimizer step, via ``loop.engine_step``), not of the CPU-side
sampler. The first warm-up step runs under ``torch.utils.flop_counter.FlopCounterMode``: its count
(matmuls and attention as the model really runs them, e.g. BERT's vocabulary projection only at the
masked positions; elementwise work not counted) is the FLOPs per step. After the warm-up, ``--steps``
steps are timed between CUDA synchronisations:

    sequences/s = micro_batch * steps / seconds;   tokens/s = sequences/s * seq (positions computed)
    MFU = FLOPs per step * steps / seconds / the GPU's dense bf16 peak (gpu_common.PEAK_BF16_TFLOPS)

A case that runs out of memory is retried once at half the micro-batch (and says so).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import sys
import time

import gpu_common  # a sibling module: the script directory is on sys.path

# name -> (preset, seq, micro-batch on the GPU, overrides of the case)
CASES = {
    "gpt2-medium-1024": ("gpt2-medium", 1024, 16, []),
    "bert-large-512": ("bert-large", 512, 64, ["data.short_seq_prob=0"]),
    "bert-large-128": ("bert-large", 128, 256, ["data.short_seq_prob=0"]),
}
# The CPU dry run keeps each case's family and code path but not its size.
CPU_SIZES = ["model.num_layers=2", "model.hidden_size=64", "model.num_attention_heads=2",
             "model.ffn_hidden_size=256"]
PREFETCHED = 4  # distinct micro-batches cycled on the device


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    gpu_common.add_mode_arguments(p)
    p.add_argument("--data", required=True, help="shards directory (python -m data_prep encode)")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (the first counts FLOPs)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--micro-batch", type=int, help="override every case's micro-batch size")
    p.add_argument("--peak-tflops", type=float,
                   help="dense bf16 peak for a GPU missing from gpu_common.PEAK_BF16_TFLOPS")
    args = gpu_common.parse(p, argv)
    if args.cpu_dry_run:
        args.warmup, args.steps = 1, 2
    return args


def case_overrides(args, case: str, fused: bool, micro_batch: int) -> list[str]:
    preset, seq, _, extra = CASES[case]
    sets = [*gpu_common.one_gpu_overrides(args.data, args.precision, args.warmup + args.steps),
            f"model.preset={preset}", f"data.seq_length={seq}", f"train.micro_batch_size={micro_batch}",
            "train.warmup_steps=1", *extra]
    if args.cpu_dry_run:
        return sets + CPU_SIZES + ["data.seq_length=64", "model.use_fused_kernels=false"]
    return sets + [f"model.use_fused_kernels={str(fused).lower()}"]


def measure(args, case: str, fused: bool, micro_batch: int) -> dict:
    """Build, warm up (counting FLOPs), time; the figures of one case."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from plmscale.parallel import device, init_model_parallel, seed_all
    from plmscale.training.engine import build_engine
    from plmscale.training.loop import build_batches, engine_step

    cfg = gpu_common.build_config(None, case_overrides(args, case, fused, micro_batch))
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    engine, _ = build_engine(cfg)
    sampler = build_batches(cfg, 0)
    prefetched = [{k: v.to(device()) for k, v in next(sampler).items()} for _ in range(PREFETCHED)]
    fill = sum(float(b["attention_mask"].float().mean()) if "attention_mask" in b else 1.0
               for b in prefetched) / PREFETCHED
    batches = itertools.cycle(prefetched)
    on_gpu = torch.cuda.is_available()
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)

    counter = FlopCounterMode(display=False)
    with counter:
        engine_step(engine, batches, 1)
    flops = counter.get_total_flops()
    for _ in range(args.warmup - 1):
        engine_step(engine, batches, 1)
    sync()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        metrics, _ = engine_step(engine, batches, 1)
    sync()
    seconds = time.perf_counter() - start
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None
    seq = cfg.data.seq_length
    result = {"case": case, "fused": fused, "micro_batch": micro_batch, "seq": seq,
              "parameters": sum(p.numel() for p in engine.module.parameters()),
              "step_ms": 1e3 * seconds / args.steps,
              "sequences_per_s": micro_batch * args.steps / seconds,
              "tokens_per_s": micro_batch * seq * args.steps / seconds, "non_padding_fraction": fill,
              "flops_per_step": flops, "tflops": flops * args.steps / seconds / 1e12,
              "peak_memory_gib": peak_gib, "last_loss": metrics["loss"]}
    del engine, batches, prefetched, sampler
    return result


def run_case(args, case: str, fused: bool) -> dict:
    """measure(), retried once at half the micro-batch on CUDA out-of-memory; errors recorded."""
    import torch
    micro_batch = args.micro_batch or (2 if args.cpu_dry_run else CASES[case][2])
    note = ""
    for attempt in range(2):
        try:
            return dict(measure(args, case, fused, micro_batch), note=note)
        except torch.cuda.OutOfMemoryError:
            note = f"out of memory at micro-batch {micro_batch}; halved"
            micro_batch //= 2
        except Exception as error:  # one case's failure must not hide the others' figures
            return {"case": case, "fused": fused, "error": f"{type(error).__name__}: {error}"}
        finally:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return {"case": case, "fused": fused, "error": note + ", and out of memory again"}


def with_mfu(rows: list[dict], peak_tflops: float | None) -> list[dict]:
    for row in rows:
        if "tflops" in row:
            row["mfu"] = row["tflops"] / peak_tflops if peak_tflops else None
    return rows


def markdown(rows: list[dict], args, info: dict, peak: float | None) -> str:
    peak_text = (f"MFU against {peak:g} TFLOP/s dense bf16 (data sheet)" if peak else
                 "no MFU: no bf16 peak known for this device (pass --peak-tflops)")
    head = (f"Training throughput, {info['device']}, torch {info['torch']} (CUDA {info['cuda']}), "
            f"deepspeed {info['deepspeed']}, {info['date']}: one rank, TP=1, ZeRO-1, "
            f"{args.precision}, {args.warmup} warm-up + {args.steps} timed "
            f"steps; {peak_text}; FLOPs per step counted by torch's FlopCounterMode. Command: "
            f"`python bench/gpu_throughput.py{' --cpu-dry-run' if args.cpu_dry_run else ''} "
            f"--precision {args.precision}`.")
    lines = [head, "", "| case | fused kernels | micro-batch | step ms | sequences/s | tokens/s | "
             "TFLOP/s | MFU | peak memory GiB | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        on = "on" if r["fused"] else "off"
        if "error" in r:
            lines.append(f"| {r['case']} | {on} | - | - | - | - | - | - | - | error: "
                         f"{r['error'][:160].replace('|', '/')} |")
            continue
        mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        mem = "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f}"
        lines.append(f"| {r['case']} | {on} | {r['micro_batch']} | {r['step_ms']:.1f} | "
                     f"{r['sequences_per_s']:,.1f} | {r['tokens_per_s']:,.0f} | {r['tflops']:.1f} | "
                     f"{mfu} | {mem} | {r['note']} |")
    lines.append("")
    lines.append("Peak memory: measured only; plmscale has no performance model to predict it yet.")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    gpu_common.start(args.cpu_dry_run)
    info = gpu_common.machine()
    peak = args.peak_tflops or gpu_common.peak_bf16_tflops(info["device"])
    if args.cpu_dry_run:
        peak = None
        print(f"CPU dry run: 2-layer models in {args.precision}, fused kernels off (they need CUDA), no MFU",
              flush=True)
    # Off then on: a build failure of the kernels cannot cost the reference figures.
    fused_modes = (False,) if args.cpu_dry_run else (False, True)
    rows = []
    for case in args.cases:
        for fused in fused_modes:
            rows.append(run_case(args, case, fused))
            print(rows[-1], flush=True)
    rows = with_mfu(rows, peak)
    table = markdown(rows, args, info, peak)
    gpu_common.write_json(args.out, {"machine": info, "cpu_dry_run": args.cpu_dry_run,
                                     "peak_tflops": peak, "rows": rows, "markdown": table})
    print(table)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
