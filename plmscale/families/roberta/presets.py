"""RoBERTa sizes (Liu et al. 2019): BERT's shapes with the 50,265-piece byte-level BPE vocabulary,
one token type, positions offset by padding_idx + 1 = 2 (HF's max_position_embeddings = 512 + 2 = 514
rows for 512 tokens) and LayerNorm eps 1e-5 (fairseq's). HF counts: SPEC.md / tests/unit."""

_ROBERTA = dict(family="roberta", type_vocab_size=1, position_offset=2, layernorm_epsilon=1e-5,
                max_position_embeddings=512)

PRESETS = {
    # Demo / test size (BERT-tiny's shapes, Turc et al. 2019); configs set the vocabulary.
    "roberta-tiny": dict(_ROBERTA, num_layers=2, hidden_size=128, num_attention_heads=2,
                         ffn_hidden_size=512),
    # Liu et al. 2019, section 4 / table: BASE L=12 H=768 A=12 (125M), LARGE L=24 H=1024 A=16 (355M).
    "roberta-base": dict(_ROBERTA, num_layers=12, hidden_size=768, num_attention_heads=12,
                         ffn_hidden_size=3072, vocab_size=50265),
    "roberta-large": dict(_ROBERTA, num_layers=24, hidden_size=1024, num_attention_heads=16,
                          ffn_hidden_size=4096, vocab_size=50265),
}
