"""Model families on shared tensor-parallel blocks; ``build_model`` picks one by name."""

from plmscale.models.registry import FAMILIES, build_model, count_parameters

__all__ = ["FAMILIES", "build_model", "count_parameters"]
