"""A/B of a switch in one interleaved run: what one change buys per training step, plmscale and the HF
reference alike, on the machine as loaded now.

    python bench/step_ab.py --switch adamw-fused [--family bert] [--size base] [--steps 6]

Builds what ``bench/train_step.py`` builds (same config, batch, engine and HF reference), then for
every step runs both sides with the switch off and on, rotating the order of the four runs so that
noise hits every arm alike; prints the median ms/step of each arm and HF/plmscale per setting.
Switches (each flips a setting in place, so both arms share one engine, one model, one batch):

- ``adamw-fused``: torch's fused AdamW kernel (on) or its per-tensor loop (off), in both sides'
  optimizers (torch reads ``fused`` from the parameter group at every step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_step  # noqa: E402  (bench/, next to this file)


def _adamw_fused(engine, optimizer, on: bool) -> None:
    adamw = getattr(engine.optimizer, "optimizer", engine.optimizer)
    for group in adamw.param_groups + optimizer.param_groups:
        group["fused"] = on


SWITCHES = {"adamw-fused": _adamw_fused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switch", choices=sorted(SWITCHES), required=True)
    parser.add_argument("--family", default="bert", choices=sorted(train_step.FAMILIES))
    parser.add_argument("--size", default="base", choices=sorted(train_step.SIZES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--attention-backend", default="sdpa")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    from plmscale.parallel import init_distributed
    init_distributed()
    cfg = train_step.config(args.family, args)
    engine, _, optimizer, ours, hf = train_step.sides(args.family, cfg)

    switch = SWITCHES[args.switch]
    arms = [(side, on, step) for on in (False, True) for side, step in (("plmscale", ours), ("hf", hf))]
    times = {(side, on): [] for side, on, _ in arms}
    for i in range(args.warmup + args.steps):
        shift = i % len(arms)
        for side, on, step in arms[shift:] + arms[:shift]:
            switch(engine, optimizer, on)
            start = time.perf_counter()
            step()
            if i >= args.warmup:
                times[side, on].append(time.perf_counter() - start)
    print(f"{args.switch}, {args.family} {args.size}, batch {args.batch} x {args.seq}, "
          f"{args.steps} steps after {args.warmup}, load average now "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| switch | plmscale ms/step | HF ms/step | HF/plmscale |\n|---|---|---|---|")
    for on in (False, True):
        ours_ms, hf_ms = (statistics.median(times[side, on]) * 1e3 for side in ("plmscale", "hf"))
        print(f"| {'on' if on else 'off'} | {ours_ms:.0f} | {hf_ms:.0f} | {hf_ms / ours_ms:.3f} |")


if __name__ == "__main__":
    main()
