#!/usr/bin/env bash
# Source this: creates (once) and activates the project's virtualenv with the pinned dependencies.
#   source launch/setup_env.sh [REQUIREMENTS_FILE]     (default: requirements.txt)
# torch is installed first as the pinned CPU-capable 2.13.0 so that no other package pulls a newer
# (multi-GB CUDA) build; on a GPU cluster install your CUDA build of torch 2.13 into the venv first.
# Re-running is cheap: installation is skipped while the requirement files are unchanged.

PLMSCALE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_requirements="${1:-requirements.txt}"
_venv="${PLMSCALE_VENV:-$PLMSCALE_ROOT/.venv}"

if [ ! -x "$_venv/bin/python" ]; then
  echo "plmscale: creating virtualenv $_venv"
  python3 -m venv "$_venv" || return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_venv/bin/activate"

_stamp="$_venv/.installed-$(cd "$PLMSCALE_ROOT" && cat requirements*.txt setup.py "$_requirements" | sha256sum | cut -c1-16)"
if [ ! -f "$_stamp" ]; then
  echo "plmscale: installing dependencies from $_requirements (first run only)"
  python -c "import torch" 2>/dev/null || pip install -q --disable-pip-version-check "torch==2.13.0" || return 1 2>/dev/null || exit 1
  pip install -q --disable-pip-version-check -r "$PLMSCALE_ROOT/$_requirements" || return 1 2>/dev/null || exit 1
  pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$PLMSCALE_ROOT" || return 1 2>/dev/null || exit 1
  touch "$_stamp"
fi
