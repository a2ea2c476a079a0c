"""How each family that generates lays out a prompt and reads back its output, declared once per
family (``Family.generation``) so that ``launch/generate.py`` has no family branches.

A family decodes through its model's ``greedy_generate(prompt_ids, max_new_tokens, eos_id)``, which
returns the new tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

from plmscale.families import all_families, get_family


@dataclass(frozen=True)
class GenerationSpec:
    """A prompt is ``prefix + sentencepiece ids + suffix`` (names of ``plmscale.data.SpecialTokens``
    fields), laid out as the family's training samples."""

    prefix: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    continues_prompt: bool = False
    """A decoder continues its prompt (its text is prompt + new tokens); an encoder-decoder writes
    a new text (its decoder's output only)."""

    def prompt_ids(self, sp, tokens, text: str) -> list[int]:
        ids = sp.encode(text) if text else []
        return ([getattr(tokens, n) for n in self.prefix] + ids
                + [getattr(tokens, n) for n in self.suffix])

    def text(self, sp, prompt: str, new_ids: list[int]) -> str:
        """The output text: the prompt's pieces and the new ones decoded together, so they join as
        in the text, for a decoder; the new tokens alone for an encoder-decoder."""
        context = sp.encode(prompt) if self.continues_prompt and prompt else []
        return sp.decode(context + new_ids)


def generation_spec(family: str) -> GenerationSpec:
    """The family's ``GenerationSpec``; raises ``ValueError`` naming the families that generate."""
    spec = get_family(family).generation
    if spec is None:
        generating = sorted(n for n, f in all_families().items() if f.generation is not None)
        raise ValueError(f"model.family {family!r} does not generate text; families that do: "
                         f"{', '.join(generating)}")
    return spec
