"""Named model sizes, one module per family (``bert.py``, ``gpt.py``, ...), each defining
``PRESETS = {name: {field: value}}`` with the source of its numbers. Modules are discovered here, so
adding a family's presets means adding its file."""

from __future__ import annotations

import importlib
import pkgutil


def _collect() -> dict[str, dict]:
    presets: dict[str, dict] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, fields in getattr(module, "PRESETS", {}).items():
            if name in presets:
                raise RuntimeError(f"preset {name!r} is defined twice (in {info.name}.py and before)")
            presets[name] = fields
    return presets


PRESETS: dict[str, dict] = _collect()


def preset_fields(name: str) -> dict:
    """The fields of preset ``name``; raises ``ValueError`` listing the known names."""
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise ValueError(
            f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None
