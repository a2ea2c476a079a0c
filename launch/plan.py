"""Rank the parallel layouts of a model on a GPU cluster (see plmscale.perf.cli):

    python launch/plan.py --config configs/gpt2.yaml --gpu H100 --nodes 4 [--global-batch 512]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plmscale.perf.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
