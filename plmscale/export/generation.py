"""How each family that generates lays out a prompt and reads back its output, declared once per
family (``GENERATION_SPECS``) so that ``launch/generate.py`` has no family branches.

A family decodes through its model's ``greedy_generate(prompt_ids, max_new_tokens, eos_id)``, which
returns the new tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass


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


GENERATION_SPECS: dict[str, GenerationSpec] = {
    # GPT continues a document; its packed stream puts eos before every document.
    "gpt": GenerationSpec(prefix=("eos",), continues_prompt=True),
    # T5's span-corruption inputs end in eos.
    "t5": GenerationSpec(suffix=("eos",)),
    # BART's denoising inputs are <s> text </s>.
    "bart": GenerationSpec(prefix=("bos",), suffix=("eos",)),
    # GLM continues a document as its [gMASK] objective: Part A [CLS] text [gMASK], then [START].
    "glm": GenerationSpec(prefix=("cls",), suffix=("gmask", "start"), continues_prompt=True),
}


def generation_spec(family: str) -> GenerationSpec:
    if family not in GENERATION_SPECS:
        raise ValueError(f"model.family {family!r} does not generate text; families that do: "
                         f"{', '.join(sorted(GENERATION_SPECS))}")
    return GENERATION_SPECS[family]
