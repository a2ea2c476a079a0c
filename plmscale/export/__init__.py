"""Export to HF ``transformers`` formats from any tensor-parallel layout."""

from plmscale.export.gather import full_tensors

__all__ = ["full_tensors"]
