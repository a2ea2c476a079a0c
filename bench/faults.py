"""Fault campaign: inject faults at seeded random places into real 2-rank gloo runs (tiny BERT) and
count what survived. The table it prints goes to bench/RESULTS.md.

    python bench/faults.py --shards runs/demo/shards [--repeats 4 --seed 14]

Faults (each repeated ``--repeats`` times at random ranks / steps / files / bytes):
- nan: one rank's loss becomes NaN at a random step, random ZeRO stage 0-3; survived = weights,
  optimizer state and step counters bit-identical across the step and the run finished.
- spike: one rank's loss x50 after the spike window is full (ZeRO-1); survived = skipped as above.
- damage: a random file of the newest checkpoint truncated at a random length or one random bit
  flipped; survived = the strict load names that file and the default load falls back to the
  previous checkpoint and finishes.
- crash: a random rank exits inside the commit of the second checkpoint; survived = the next start
  resumes from the first one and its losses equal an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
# bench/data_prep.py would shadow the data_prep package: this script's folder leaves the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests" / "parallel"))

from harness import run_ranks  # noqa: E402  (the test suite's N-rank spawner)
from reliability_workers import (_damage, _states_of_run, config, identical,  # noqa: E402
                                 nan_on_calls)


def skip_faults(shards: str, plan: list[tuple]) -> list[bool]:
    """nan / spike faults of ``plan`` in one 2-rank group; survived per fault."""
    from plmscale.parallel import init_distributed
    from workers_common import initialised_model
    init_distributed()
    survived = []
    for kind, stage, rank, call in plan:
        extra = ["train.spike_window=3", "train.spike_std_factor=6"] if kind == "spike" else []
        cfg = config(shards, [f"parallel.zero_stage={stage}", "train.train_steps=8", *extra])
        model = initialised_model(cfg)
        nan_on_calls(model, rank, {call}, float("nan") if kind == "nan" else 50.0)
        states, history, stopped = _states_of_run(cfg, model)
        flags = [h.get("skipped", 0.0) for h in history]
        ok = (stopped is None and flags.count(1.0) == 1 and flags.index(1.0) == call - 1
              and not identical(states[call - 2], states[call - 1]) and len(states) == 9)
        survived.append(ok)
    return survived


def damage_faults(shards: str, root: str, plan: list[tuple]) -> list[bool]:
    """Per fault: save at steps 2 and 4, damage a file of step4, load strictly then with fallback."""
    import torch.distributed as dist

    from plmscale.parallel import init_distributed
    from plmscale.training import checkpoint
    from plmscale.training.loop import train
    init_distributed()
    survived = []
    for i, (file_pick, how, where) in enumerate(plan):
        save_dir = os.path.join(root, f"damage{i}")
        layout = ["parallel.zero_stage=1", "train.train_steps=6"]
        straight = [h["loss"] for h in train(config(shards, layout + [
            "train.save_interval=2", f"train.save_dir={save_dir}"]))]
        files = sorted(p for p in os.listdir(os.path.join(save_dir, "step6"))
                       if p != checkpoint.MANIFEST)
        victim = os.path.join(save_dir, "step6", files[file_pick % len(files)])
        if dist.get_rank() == 0:
            _damage(victim, how, where)
        dist.barrier()
        try:
            train(config(shards, layout + ["train.train_steps=8", f"train.load_dir={save_dir}",
                                           "train.resume_fallback=false"]))
            named = False
        except checkpoint.CheckpointError as error:
            named = victim in str(error)
        resumed = [h["loss"] for h in train(config(shards, layout + [f"train.load_dir={save_dir}"]))]
        survived.append(named and resumed == straight[4:])
    return survived


def crash_fault(shards: str, save_dir: str, rank: int) -> None:
    import torch.distributed as dist

    from plmscale.parallel import init_distributed
    from plmscale.training import checkpoint
    from plmscale.training.loop import train
    init_distributed()
    commit = checkpoint.commit

    def dying(directory, tag, metadata, cfg):
        if tag == "step4" and dist.get_rank() == rank:
            os._exit(9)
        commit(directory, tag, metadata, cfg)
    checkpoint.commit = dying
    train(config(shards, ["parallel.zero_stage=1", "train.train_steps=6", "train.save_interval=2",
                          f"train.save_dir={save_dir}", "train.collective_timeout_s=60"]))


def after_crash(shards: str, save_dir: str) -> bool:
    from plmscale.parallel import init_distributed
    from plmscale.training.loop import train
    init_distributed()
    layout = ["parallel.zero_stage=1", "train.train_steps=6"]
    straight = [h["loss"] for h in train(config(shards, layout))]
    resumed = [h["loss"] for h in train(config(shards, layout + [f"train.load_dir={save_dir}"]))]
    return resumed == straight[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", required=True, help="a data_prep encode output directory")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    n = args.repeats
    skips = ([("nan", rng.randrange(4), rng.randrange(2), rng.randrange(2, 9)) for _ in range(n)]
             + [("spike", 1, rng.randrange(2), rng.randrange(5, 9)) for _ in range(n)])
    damages = [(rng.randrange(100), rng.choice(["truncate", "flip"]), rng.random()) for _ in range(n)]
    rows = {}
    result = run_ranks(2, skip_faults, args.shards, skips)[0]
    for kind in ("nan", "spike"):
        outcome = [ok for (k, *_), ok in zip(skips, result) if k == kind]
        rows[kind] = (len(outcome), sum(outcome))
    with tempfile.TemporaryDirectory() as root:
        outcome = run_ranks(2, damage_faults, args.shards, root, damages)[0]
        rows["damage"] = (len(outcome), sum(outcome))
        crashes = 0
        for i in range(n):
            save_dir = os.path.join(root, f"crash{i}")
            try:
                run_ranks(2, crash_fault, args.shards, save_dir, rng.randrange(2))
            except AssertionError:
                pass  # the crash: expected
            crashes += run_ranks(2, after_crash, args.shards, save_dir)[0]
        rows["crash"] = (n, crashes)
    print("| fault | injected | survived |")
    print("|---|---|---|")
    for kind, (total, ok) in rows.items():
        print(f"| {kind} | {total} | {ok} |")
    print(f"plan: skips={skips} damages={damages}")


if __name__ == "__main__":
    main()
