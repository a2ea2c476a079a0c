"""Export a checkpoint to a Hugging Face folder: ``python launch/export.py --checkpoint DIR --output
OUT`` (the same as the installed ``plmscale export``; see plmscale/export/command.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plmscale.export.command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
