#!/usr/bin/env bash
# Everything plmscale needs to learn from one short GPU window, in one command (issue 18).
#
#   bash bench/gpu_check.sh LOGDIR                  on the GPU machine, from the repository root
#   bash bench/gpu_check.sh LOGDIR --cpu-dry-run    here, on CPU: every step at tiny sizes in fp32
#   bash bench/gpu_check.sh --prepare               on CPU before the window: the tokenizer and shards
#                                                   (runs/gpu_check/data) to carry with the checkout
#
# Before the window: `bash ../shared/device/prepare_wheels.sh` (wheels into .whl/) and --prepare; carry
# .whl and runs/gpu_check to the machine. Steps, each under its own `timeout` (capped by what is left
# of GPU_CHECK_BUDGET_S, default 570 s, so the whole run ends inside 10 minutes): wheels, imports,
# kernel + fused-Adam builds (in parallel), data, `pytest -m gpu tests/kernels`, throughput
# (bench/gpu_throughput.py), the bf16 smoke run of every family (bench/gpu_smoke.py; the CPU dry run
# runs it in fp32 and again in bf16), `bench/kernels.py --dtype bf16`, one run through
# launch/train.py. A failed step is recorded and the next one runs. Each step's output is LOGDIR/<step>.log; LOGDIR/steps.tsv has status and seconds;
# LOGDIR/summary.md gathers the figures ready to paste into bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}  # the GPU image has python3 and maybe no `python`
DATA=runs/gpu_check/data

make_data() {  # $1: output dir. data_prep's own command line, as tests/conftest.py uses it.
  local common=(--input corpora/gothic_novels.txt --doc-separator '<|endoftext|>')
  "$PY" -m data_prep train-tokenizer "${common[@]}" --output "$1/tokenizer.model" --vocab-size 8000 &&
    "$PY" -m data_prep encode "${common[@]}" --tokenizer "$1/tokenizer.model" --output "$1/shards" \
      --workers 2 --no-progress
}

if [ "${1:-}" = --prepare ]; then
  rm -rf "$DATA" && mkdir -p "$DATA" && make_data "$DATA" > /dev/null && echo "prepared $DATA"
  exit $?
fi
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: bash bench/gpu_check.sh LOGDIR [--cpu-dry-run] | bash bench/gpu_check.sh --prepare" >&2
  exit 2
fi
mkdir -p "$1" && LOG=$(cd "$1" && pwd)
CPU=${PLMSCALE_GPU_CHECK_CPU:-0}
[ "${2:-}" = --cpu-dry-run ] && CPU=1
export PLMSCALE_GPU_CHECK_CPU=$CPU  # the python drivers read it (gpu_common.CPU_ENV)
BUDGET=${GPU_CHECK_BUDGET_S:-570}
export PLMSCALE_KERNELS_BUILD_DIR=${PLMSCALE_KERNELS_BUILD_DIR:-$REPO/build/kernels}
export MAX_JOBS=${MAX_JOBS:-16} TOKENIZERS_PARALLELISM=false
printf 'step\tstatus\tseconds\tlimit_s\n' > "$LOG/steps.tsv"

# step NAME LIMIT_S COMMAND: run COMMAND (bash) under timeout, output to LOGDIR/NAME.log.
step() {
  local name=$1 limit=$2 cmd=$3 left t0 rc status
  left=$((BUDGET - SECONDS))
  if [ "$left" -lt 15 ]; then
    status="not run: the ${BUDGET} s budget is spent"
    printf '%s\t%s\t0\t0\n' "$name" "$status" >> "$LOG/steps.tsv"
    echo "== $name: $status"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit} s) -> $LOG/$name.log"
  t0=$SECONDS
  timeout -k 10 "$limit" bash -c "$cmd" > "$LOG/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT after ${limit} s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t0))" "$limit" >> "$LOG/steps.tsv"
  echo "   $status in $((SECONDS - t0)) s; last lines:"
  tail -n 4 "$LOG/$name.log" | sed 's/^/   | /'
  return $rc
}

# The device README's install line; the CPU dry run keeps this machine's venv (the wheels are cp312).
if [ "$CPU" = 1 ]; then
  step wheels 90 "echo 'CPU dry run: skipping the wheel install (cp312 wheels for the GPU image);' \
    'using this venv:'
    $PY -c 'import deepspeed, megatron.core as m; print(deepspeed.__version__, m.__version__)'"
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
else
  step wheels 120 "ls .whl/*.whl > /dev/null || { echo 'no wheels in .whl/: run' \
    'bash ../shared/device/prepare_wheels.sh before the window and carry .whl'; exit 1; }
    $PY -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl"
  export PYTHONPATH=$REPO/.site:$REPO
fi

step environment 60 "date -u; nvidia-smi || echo 'no nvidia-smi (CPU dry run)'; nvcc --version || true
  $PY - <<'EOF'
import deepspeed, megatron.core, torch
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
print('deepspeed', deepspeed.__version__, 'megatron-core', megatron.core.__version__)
if torch.cuda.is_available():
    print('device', torch.cuda.get_device_name(0), 'capability', torch.cuda.get_device_capability(0))
EOF"

if [ "$CPU" = 0 ] && [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  # Build for this GPU only: a fraction of the all-architectures compile time.
  TORCH_CUDA_ARCH_LIST=$(timeout 60 "$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))' \
    2>/dev/null) &&
    export TORCH_CUDA_ARCH_LIST
fi

# The two JIT builds every later step needs, side by side (ninja uses MAX_JOBS cores each).
step build_kernels 300 "$PY - <<'EOF'
import os, sys
from plmscale.kernels import build
ext = build.load_extension()
print('fused kernels:', 'loaded' if ext else 'unavailable: %s' % build.unavailable_reason())
sys.exit(0 if ext or os.environ['PLMSCALE_GPU_CHECK_CPU'] == '1' else 1)
EOF" &
step build_fused_adam 300 "if [ $CPU = 1 ]; then echo 'CPU dry run: DeepSpeed fused Adam needs CUDA;' \
    'plmscale uses torch AdamW on CPU (plmscale.config.deepspeed)'; exit 0; fi
  $PY -c 'from deepspeed.ops.op_builder import FusedAdamBuilder as B; B().load(); print(\"fused Adam loaded\")'" &
wait

if [ -f "$DATA/shards/manifest.json" ]; then
  step data 30 "echo 'using the carried $DATA'; ls -la $DATA/shards"
else
  # data_prep needs zstandard, which the GPU image may lack: hence --prepare and the carried data.
  step data 120 "$PY -c 'import zstandard' || { echo 'no $DATA and no zstandard to make it: run' \
    'bash bench/gpu_check.sh --prepare before the window and carry runs/gpu_check'; exit 1; }
    mkdir -p $LOG/data && $(declare -f make_data); PY=$PY make_data $LOG/data"
  DATA=$LOG/data
fi

step pytest_gpu 180 "$PY -m pytest -m gpu tests/kernels -q -rs"
step throughput 240 "$PY bench/gpu_throughput.py --data $DATA/shards --out $LOG/throughput.json"
step smoke 240 "$PY bench/gpu_smoke.py --data $DATA/shards --out $LOG/smoke.json"
if [ "$CPU" = 1 ]; then
  # DeepSpeed's bf16 also runs on CPU: check every family's bf16 model path here, not in the window.
  step smoke_bf16_cpu 240 "$PY bench/gpu_smoke.py --precision bf16 --data $DATA/shards \
    --out $LOG/smoke_bf16_cpu.json"
  step kernels_bench 30 "echo 'CPU dry run: bench/kernels.py times CUDA events; skipped. Its options:'
    $PY bench/kernels.py --help"
else
  step kernels_bench 240 "$PY bench/kernels.py --dtype bf16 --write-results $LOG/kernels.md"
fi
PRECISION=bf16
[ "$CPU" = 1 ] && PRECISION=fp32
step train_cli 120 "$PY launch/train.py --config configs/gpt_tiny.yaml --set data.path=$DATA/shards \
  --set parallel.tensor_model_parallel_size=1 --set train.precision=$PRECISION \
  --set train.train_steps=5 --set train.save_dir=null --set train.progress_bar=false \
  --set train.log_interval=1 --set data.num_workers=0"

# summary.md: the machine, the step table and each driver's markdown, ready for bench/RESULTS.md.
"$PY" - "$LOG" "$CPU" "$SECONDS" <<'EOF' > "$LOG/summary.md"
import json, sys
from pathlib import Path
log, cpu, seconds = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
print(f"## GPU check (bench/gpu_check.sh){' — CPU DRY RUN, no GPU figures' if cpu else ''}\n")
env = (log / "environment.log").read_text() if (log / "environment.log").exists() else "-"
env = "\n".join(line for line in env.splitlines()  # library import warnings are not the machine
                if not any(w in line for w in ("Warning", "warnings.warn", "[WARNING]")))
print(f"Command: `bash bench/gpu_check.sh LOGDIR{' --cpu-dry-run' if cpu else ''}`, {seconds} s in all.\n")
print("```\n" + env.strip()[-1500:] + "\n```\n")
rows = [line.split("\t") for line in (log / "steps.tsv").read_text().splitlines()]
print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
print("\n".join("| " + " | ".join(r) + " |" for r in rows[1:]) + "\n")
for name, title in (("throughput.json", "Throughput"), ("smoke.json", "Smoke run, fused kernels on/off"),
                    ("smoke_bf16_cpu.json", "CPU dry run: smoke run in bf16")):
    if name.endswith("_cpu.json") and not cpu:
        continue
    path = log / name
    body = json.loads(path.read_text())["markdown"] if path.exists() else f"(no {name}: see the log)"
    print(f"### {title}\n\n{body}\n")
kernels = log / "kernels.md"  # bench/kernels.py's RESULTS.md section: its own headings dropped
body = ("\n".join(l for l in kernels.read_text().splitlines() if not l.startswith("#")).strip()
        if kernels.exists() else "(no kernels.md: " + ("CPU dry run" if cpu else "see kernels_bench.log") + ")")
print("### Fused kernels\n\n" + body)
EOF
echo "== summary: $LOG/summary.md (${SECONDS} s in all)"
! grep -qv -e $'\tok\t' -e '^step' "$LOG/steps.tsv"
