"""Named model sizes, as the families declare them (``Family.presets``, from each family's
``presets.py`` with the sources of its numbers)."""

from __future__ import annotations

import functools

from plmscale.families import all_families


@functools.cache
def all_presets() -> dict[str, dict]:
    """Every family's presets by name; a name defined by two families is an error."""
    presets: dict[str, dict] = {}
    for family in all_families().values():
        for name, fields in family.presets.items():
            if name in presets:
                raise RuntimeError(f"preset {name!r} is defined twice (by family {family.name!r} "
                                   f"and one before it)")
            presets[name] = fields
    return presets


def preset_fields(name: str) -> dict:
    """The fields of preset ``name``; raises ``ValueError`` listing the known names."""
    try:
        return dict(all_presets()[name])
    except KeyError:
        raise ValueError(
            f"unknown model preset {name!r}; known presets: {', '.join(sorted(all_presets()))}"
        ) from None
