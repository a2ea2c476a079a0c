"""Which optional config fields each family reads, and its own objective defaults, as the families
declare them (``Family.fields`` in ``plmscale/families/<name>/__init__.py``), so validation can
refuse, before anything is built, a field the family would silently ignore or an objective it
cannot honour.

Fields every family reads (sizes, dropout, vocabulary, ...) are not listed: only the optional ones
are (a model field is optional when some family declares it; every objective field is). A family
that does not read an option must leave it at its default: the schema's, or the family's
``objective_defaults``.
"""

from __future__ import annotations

import dataclasses

from plmscale.config.schema import ModelConfig, ObjectiveConfig
from plmscale.families import FAMILY_MODULES, FamilyFields, all_families, get_family

OPTIONAL_OBJECTIVE_FIELDS = tuple(f.name for f in dataclasses.fields(ObjectiveConfig))


def family_fields(family: str) -> FamilyFields:
    """The fields ``family`` declares; raises ``ValueError`` naming the known families."""
    if family not in FAMILY_MODULES:
        raise ValueError(f"unknown model.family {family!r}; known: {', '.join(sorted(FAMILY_MODULES))}")
    return get_family(family).fields


def optional_model_fields() -> tuple[str, ...]:
    """Model fields that some family reads and the others must leave at their defaults."""
    return tuple(sorted({n for f in all_families().values() for n in f.fields.model}))


def readers(section: str, name: str) -> list[str]:
    """The families that read optional field ``section.name``."""
    return sorted(n for n, f in all_families().items() if name in getattr(f.fields, section))


def ignored_fields(model: ModelConfig, objective: ObjectiveConfig) -> list[tuple[str, str]]:
    """(section, field) of every optional field set away from its default that ``model.family``
    does not read."""
    declared = family_fields(model.family)
    defaults = {"model": ModelConfig(),
                "objective": dataclasses.replace(ObjectiveConfig(), **declared.objective_defaults)}
    found = []
    for section, values, names in (("model", model, optional_model_fields()),
                                   ("objective", objective, OPTIONAL_OBJECTIVE_FIELDS)):
        for name in names:
            if name in getattr(declared, section):
                continue
            if getattr(values, name) != getattr(defaults[section], name):
                found.append((section, name))
    return found
