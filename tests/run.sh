#!/usr/bin/env bash
# Installs what the tests need (once) and runs them. Arguments go to pytest, e.g. -k tensor_parallel.
# GPU tests are marked `gpu` and skip themselves without CUDA; run them alone with `-m gpu`.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/setup_env.sh requirements-test.txt
# Open MPI refuses to start as root unless told; CI machines run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
python -m pytest "$@"
