"""Model families on shared tensor-parallel blocks; ``get_family`` / ``build_model`` pick one by name."""

from plmscale.models.family import Family
from plmscale.models.registry import FAMILY_MODULES, build_model, count_parameters, get_family

__all__ = ["FAMILY_MODULES", "Family", "build_model", "count_parameters", "get_family"]
