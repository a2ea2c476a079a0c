"""Named model sizes. Each preset gives the fields that differ from ``ModelConfig``'s defaults and the
source of its numbers; SPEC.md's table lists the HF parameter count each one must reproduce."""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    # Turc et al. 2019 ("Well-Read Students Learn Better"), the 2-layer / 128-hidden BERT.
    "bert-tiny": dict(family="bert", num_layers=2, hidden_size=128, num_attention_heads=2,
                      ffn_hidden_size=512),
    # Devlin et al. 2019, Table/section 3: L=12, H=768, A=12 (110M); L=24, H=1024, A=16 (340M).
    "bert-base": dict(family="bert", num_layers=12, hidden_size=768, num_attention_heads=12,
                      ffn_hidden_size=3072, vocab_size=30522),
    "bert-large": dict(family="bert", num_layers=24, hidden_size=1024, num_attention_heads=16,
                       ffn_hidden_size=4096, vocab_size=30522),
}


def preset_fields(name: str) -> dict:
    """The fields of preset ``name``; raises ``ValueError`` listing the known names."""
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise ValueError(
            f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None
