"""What the GPU-window drivers (bench/gpu_smoke.py, bench/gpu_throughput.py) share: the CPU dry-run
switch, one world-of-one process group, configs built through the public loader, the machine
description and the table of GPU peak throughputs that MFU is measured against.

Import this module only after the driver has parsed its arguments: ``--cpu-dry-run`` hides any GPU
before torch is imported, so the dry run takes the CPU paths even on a GPU machine.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CPU_ENV = "PLMSCALE_GPU_CHECK_CPU"
"""bench/gpu_check.sh sets this to 1 for its CPU dry run; the drivers then act as if --cpu-dry-run."""

# Dense (no structured sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets:
# H100 SXM5 and H200 SXM (same GH100 compute: 989.4; the sheets print 1,979 "with sparsity"),
# H100 PCIe 756, A100 SXM/PCIe 312 ("624 with sparsity"). The first matching name wins.
PEAK_BF16_TFLOPS = (
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),
    ("A100", 312.0),
)


def add_mode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help=f"tiny sizes, fp32, on CPU: exercises every path but the CUDA calls "
                             f"(also on with {CPU_ENV}=1)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--precision", choices=("bf16", "fp32"),
                        help="default bf16 on the GPU, fp32 in the CPU dry run (DeepSpeed's bf16 also "
                             "runs on CPU: --precision bf16 checks the bf16 model paths there)")


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, then fix the device before torch is imported anywhere."""
    args = parser.parse_args(argv)
    args.cpu_dry_run = args.cpu_dry_run or os.environ.get(CPU_ENV) == "1"
    if args.cpu_dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    args.precision = args.precision or ("fp32" if args.cpu_dry_run else "bf16")
    return args


def start(cpu_dry_run: bool) -> None:
    """One process group of one rank (NCCL on a GPU, gloo on CPU); exits with a clear message when
    a GPU run finds no GPU."""
    warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")
    import torch

    from plmscale.parallel import init_distributed
    if not cpu_dry_run and not torch.cuda.is_available():
        sys.exit("no CUDA device is available: run on the GPU machine, or pass --cpu-dry-run "
                 f"(or {CPU_ENV}=1) to check the script on CPU")
    init_distributed()


def build_config(config: str | None, overrides: list[str]):
    """A validated ``ExperimentConfig`` for a world of one, as ``launch/train.py`` makes it."""
    from plmscale.config import load_config, validate_config
    cfg = load_config(config, overrides)
    validate_config(cfg, 1)
    return cfg


def one_gpu_overrides(data_path: str, precision: str, train_steps: int) -> list[str]:
    """``--set`` overrides every driver applies: one rank (TP=1, no pipeline), ZeRO-1, ``precision``,
    in-process sampling, no progress bar, TensorBoard or checkpoint unless asked for."""
    return [f"data.path={data_path}", "data.num_workers=0", "parallel.tensor_model_parallel_size=1",
            "parallel.pipeline_model_parallel_size=1", "parallel.zero_stage=1",
            f"train.precision={precision}", f"train.train_steps={train_steps}",
            "train.progress_bar=false", "train.tensorboard_dir=null", "train.save_dir=null"]


def peak_bf16_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of the named GPU from PEAK_BF16_TFLOPS, or None for a GPU not in it."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def machine() -> dict:
    """GPU (or CPU), library versions and the UTC time, for the results file."""
    import deepspeed
    import torch
    info = {"date": f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
            "torch": torch.__version__, "cuda": torch.version.cuda, "deepspeed": deepspeed.__version__}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, memory_gib=round(props.total_memory / 2**30, 1))
    else:
        info.update(device=f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)")
    return info


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
