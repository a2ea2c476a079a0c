"""A/B of a switch in one interleaved run: what one change buys per training step, plmscale and the HF
reference alike, on the machine as loaded now.

    python bench/step_ab.py --switch adamw-fused [--family bert] [--size base] [--steps 6]

Builds what ``bench/train_step.py`` builds (same config, batch, engine and HF reference), then for
every step runs both sides with the switch off and on, rotating the order of the four runs so that
noise hits every arm alike; prints the median ms/step of each arm and HF/plmscale per setting.
Switches (each flips a setting in place, so both arms share one engine, one model, one batch):

- ``adamw-fused``: torch's fused AdamW kernel (on) or its per-tensor loop (off), in both sides'
  optimizers (torch reads ``fused`` from the parameter group at every step).
- ``sparse-last-layer``: plmscale's last encoder layer computes only the positions the losses read
  (on, the default) or every position (off: ``query_rows``, which picks the rows, is swapped for
  "none" in its module; it is looked up at every step). The HF side does not change.
- ``bias-in-gemm``: plmscale's linears on one TP rank add their bias inside the GEMM (on, the
  default) or in megatron-core's separate pass (off: ``_BiasInGemmOnOneRank.bias_in_gemm``).
- ``one-gradient``: the tied word-embedding table gets one gradient from its lookup and the output
  layer on one TP rank (on, the default) or autograd sums their two dense ones (off:
  ``_TiedTableOnOneRank.one_gradient``).

Also prints plmscale's FLOPs per step in each setting (FlopCounterMode, as train_step.py counts).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_step  # noqa: E402  (bench/, next to this file)
from plmscale.families.bert import model as bert_model  # noqa: E402
from plmscale.models.common import megatron as megatron_layers  # noqa: E402

QUERY_ROWS = bert_model.query_rows


def _adamw_fused(engine, optimizer, on: bool) -> None:
    adamw = getattr(engine.optimizer, "optimizer", engine.optimizer)
    for group in adamw.param_groups + optimizer.param_groups:
        group["fused"] = on


def _sparse_last_layer(engine, optimizer, on: bool) -> None:
    bert_model.query_rows = QUERY_ROWS if on else (lambda read: None)


def _bias_in_gemm(engine, optimizer, on: bool) -> None:
    megatron_layers._BiasInGemmOnOneRank.bias_in_gemm = on


def _one_gradient(engine, optimizer, on: bool) -> None:
    megatron_layers._TiedTableOnOneRank.one_gradient = on


SWITCHES = {"adamw-fused": _adamw_fused, "sparse-last-layer": _sparse_last_layer,
            "bias-in-gemm": _bias_in_gemm, "one-gradient": _one_gradient}


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

    def arm(on, step):
        def run():  # the flip (a few attribute writes) is inside the timed call
            switch(engine, optimizer, on)
            step()
        return run

    times = train_step.interleaved_times(
        [((side, on), arm(on, step)) for on in (False, True)
         for side, step in (("plmscale", ours), ("hf", hf))], args.warmup, args.steps)
    flops = {}
    for on in (False, True):
        switch(engine, optimizer, on)
        flops[on] = train_step.counted_flops(ours)
    print(f"{args.switch}, {args.family} {args.size}, batch {args.batch} x {args.seq}, "
          f"{args.steps} steps after {args.warmup}, load average now "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| switch | plmscale ms/step | HF ms/step | HF/plmscale | plmscale FLOPs/step |\n"
          "|---|---|---|---|---|")
    for on in (False, True):
        ours_ms, hf_ms = (statistics.median(times[side, on]) * 1e3 for side in ("plmscale", "hf"))
        print(f"| {'on' if on else 'off'} | {ours_ms:.0f} | {hf_ms:.0f} | {hf_ms / ours_ms:.3f} "
              f"| {flops[on]:.3g} |")


if __name__ == "__main__":
    main()
