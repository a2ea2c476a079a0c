"""BERT sizes. HF counts to reproduce are in SPEC.md's table (tests/unit/test_parameter_counts.py)."""

PRESETS = {
    # Turc et al. 2019 ("Well-Read Students Learn Better"): the 2-layer / 128-hidden BERT.
    "bert-tiny": dict(family="bert", num_layers=2, hidden_size=128, num_attention_heads=2,
                      ffn_hidden_size=512),
    # Devlin et al. 2019, section 3: L=12, H=768, A=12 (110M); L=24, H=1024, A=16 (340M).
    "bert-base": dict(family="bert", num_layers=12, hidden_size=768, num_attention_heads=12,
                      ffn_hidden_size=3072, vocab_size=30522),
    "bert-large": dict(family="bert", num_layers=24, hidden_size=1024, num_attention_heads=16,
                       ffn_hidden_size=4096, vocab_size=30522),
}
