"""bf16 training smoke run of every family's tiny config on one GPU, fused kernels on and off.

    python bench/gpu_smoke.py --data runs/demo/shards --out logs/smoke.json [--steps 8]
    python bench/gpu_smoke.py --data ... --out ... --cpu-dry-run      (fp32, CPU, 2 steps, batch 2)

Each family trains ``--steps`` optimiser steps through ``plmscale.training.loop.train`` (TP=1,
ZeRO-1, bf16) twice from the same seed: ``model.use_fused_kernels=true`` (the CUDA kernels must
load, or the run fails) and ``=false`` (torch reference path). Both runs draw the same data and
dropout masks, so their per-step losses may differ only by bf16 rounding: the verdict is PASS when
every step's losses agree within ``--rtol`` (relative) + ``--atol`` and are finite. DistilBERT's
teacher is the BERT run's checkpoint. On CPU the "fused" run has no kernels to use, so it runs the
reference path again (said in the output): the dry run checks the driver, not the kernels.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import gpu_common  # a sibling module: the script directory is on sys.path

# Family -> its tiny config. BERT's comes first: its checkpoint is DistilBERT's teacher.
TINY_CONFIGS = {
    "bert": "configs/bert_demo.yaml",
    "distilbert": "configs/distilbert_tiny.yaml",
    "roberta": "configs/roberta_tiny.yaml",
    "albert": "configs/albert_tiny.yaml",
    "electra": "configs/electra_tiny.yaml",
    "t5": "configs/t5_tiny.yaml",
    "bart": "configs/bart_tiny.yaml",
    "gpt": "configs/gpt_tiny.yaml",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    gpu_common.add_mode_arguments(p)
    p.add_argument("--data", required=True, help="shards directory (python -m data_prep encode)")
    p.add_argument("--work", type=Path, help="checkpoints (the DistilBERT teacher); default: "
                                              "next to --out")
    p.add_argument("--steps", type=int, default=8, help="optimiser steps per run (CPU: 2)")
    p.add_argument("--families", nargs="+", choices=list(TINY_CONFIGS), default=list(TINY_CONFIGS))
    p.add_argument("--rtol", type=float, default=2e-2, help="relative loss tolerance (bf16: 2^-7 "
                                                           "per rounding, a few roundings deep)")
    p.add_argument("--atol", type=float, default=2e-2)
    args = gpu_common.parse(p, argv)
    if args.cpu_dry_run:
        args.steps = min(args.steps, 2)
    if "distilbert" in args.families and "bert" not in args.families:
        p.error("distilbert needs bert in --families (its checkpoint is the teacher)")
    return args


def overrides(args, family: str, fused: bool, work: Path) -> list[str]:
    sets = [*gpu_common.one_gpu_overrides(args.data, args.precision, args.steps),
            "train.warmup_steps=2", f"train.log_interval={args.steps}",
            # On CPU, "fused on" can only mean "use them if they load" (they cannot): see __doc__.
            f"model.use_fused_kernels={'null' if args.cpu_dry_run else str(fused).lower()}"]
    if family == "bert" and not fused:
        sets.append(f"train.save_dir={work / 'bert_teacher'}")
    if family == "distilbert":
        sets.append(f"objective.distillation_teacher_path={work / 'bert_teacher'}")
    if args.cpu_dry_run:
        sets.append("train.micro_batch_size=2")
    return sets


def run(args, family: str, fused: bool, work: Path) -> dict:
    """Train one family once; the per-step losses, or the error that stopped it."""
    import torch

    from plmscale.parallel import init_model_parallel, seed_all
    from plmscale.training.loop import train
    started = time.perf_counter()
    try:
        cfg = gpu_common.build_config(str(gpu_common.REPO / TINY_CONFIGS[family]),
                                      overrides(args, family, fused, work))
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)
        history = train(cfg)
        result = {"losses": [h["loss"] for h in history]}
    except Exception as error:  # one family's failure must not hide the others' results
        result = {"error": f"{type(error).__name__}: {error}"}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def compare(fused: dict, reference: dict, rtol: float, atol: float) -> tuple[str, float | None]:
    """(verdict, largest relative step difference) of the fused run against the reference run."""
    if "error" in fused or "error" in reference:
        return "ERROR", None
    a, b = fused["losses"], reference["losses"]
    if len(a) != len(b) or not a:
        return "FAIL", None
    if not all(math.isfinite(x) for x in a + b):
        return "FAIL", None
    worst = max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))
    ok = all(abs(x - y) <= atol + rtol * abs(y) for x, y in zip(a, b))
    return ("PASS" if ok else "FAIL"), worst


def markdown(rows: list[dict], args, info: dict) -> str:
    cpu_note = " (CPU dry run: both runs take the reference path)" if args.cpu_dry_run else ""
    head = (f"{args.precision} smoke run, {info['device']}, torch "
            f"{info['torch']} (CUDA {info['cuda']}), deepspeed {info['deepspeed']}, {info['date']}: "
            f"each family's tiny config, TP=1, ZeRO-1, {args.steps} steps, fused kernels on vs "
            f"off{cpu_note} (tolerance {args.rtol:g} relative + {args.atol:g}). Command: "
            f"`python bench/gpu_smoke.py{' --cpu-dry-run' if args.cpu_dry_run else ''} "
            f"--precision {args.precision} --steps {args.steps}`.")
    lines = [head, "", "| family | verdict | first loss (fused / off) | last loss (fused / off) | "
             "max rel. diff | s (fused / off) |", "|---|---|---|---|---|---|"]
    for r in rows:
        on, off = r["fused"], r["reference"]
        if "error" in on or "error" in off:
            losses = ["error: " + (on.get("error") or off.get("error"))[:160].replace("|", "/")] + ["-"]
        else:
            losses = [f"{on['losses'][i]:.4f} / {off['losses'][i]:.4f}" for i in (0, -1)]
        diff = "-" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.2e}"
        lines.append(f"| {r['family']} | {r['verdict']} | {' | '.join(losses)} | {diff} | "
                     f"{on['seconds']} / {off['seconds']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    gpu_common.start(args.cpu_dry_run)
    if args.cpu_dry_run:
        print("CPU dry run: no CUDA kernels here, so the 'fused' runs take the reference path too",
              flush=True)
    work = args.work or args.out.parent / "smoke_work"
    rows = []
    for family in args.families:
        # The reference run first: BERT's is the one that saves DistilBERT's teacher.
        reference = run(args, family, False, work)
        fused = run(args, family, True, work)
        verdict, worst = compare(fused, reference, args.rtol, args.atol)
        rows.append({"family": family, "verdict": verdict, "max_rel_diff": worst,
                     "fused": fused, "reference": reference})
        print(f"{family}: {verdict} fused {fused} reference {reference}", flush=True)
    info = gpu_common.machine()
    table = markdown(rows, args, info)
    gpu_common.write_json(args.out, {"machine": info, "cpu_dry_run": args.cpu_dry_run,
                                     "rows": rows, "markdown": table})
    print(table)
    failed = [r["family"] for r in rows if r["verdict"] != "PASS"]
    print(f"smoke verdict: {'PASS' if not failed else 'FAIL (' + ', '.join(failed) + ')'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
