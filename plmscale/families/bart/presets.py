"""BART sizes. HF counts to reproduce (BartForConditionalGeneration, vocab 50265) are in SPEC.md's
table; tests/unit/test_bart_parameter_counts.py checks them."""

# What every BART size shares (Lewis et al. 2020; HF BartConfig): learned positions with index offset
# 2 over 1024 positions, no token types, LayerNorm eps 1e-5, erf GELU, tied embeddings, GPT-2 BPE size.
_BART = dict(family="bart", vocab_size=50265, max_position_embeddings=1024, type_vocab_size=0,
             position_offset=2, layernorm_epsilon=1e-5, gelu_approximate="none",
             activation="gelu", tie_word_embeddings=True)

PRESETS = {
    # A 2+2-layer, 128-wide BART for tests and the CPU demo (configs/bart_tiny.yaml).
    "bart-tiny": dict(_BART, num_layers=2, num_decoder_layers=2, hidden_size=128,
                      num_attention_heads=4, ffn_hidden_size=512),
    # Lewis et al. 2020, section 3 / fairseq bart.base: 6+6 layers, d_model 768, 12 heads, FFN 3072.
    "bart-base": dict(_BART, num_layers=6, num_decoder_layers=6, hidden_size=768,
                      num_attention_heads=12, ffn_hidden_size=3072),
    # bart.large: 12+12 layers, d_model 1024, 16 heads, FFN 4096 (the size of BERT-large per stack).
    "bart-large": dict(_BART, num_layers=12, num_decoder_layers=12, hidden_size=1024,
                       num_attention_heads=16, ffn_hidden_size=4096),
}
