"""XLNet sizes (Yang et al. 2019, section 3.1: XLNet-Base as BERT-Base, XLNet-Large as BERT-Large),
the 32,000-piece sentencepiece vocabulary, LayerNorm eps 1e-12, one dropout (0.1). HF counts
(``XLNetLMHeadModel``): xlnet-base 116,750,336, xlnet-large 360,300,800 (SPEC.md / tests/unit)."""

_XLNET = dict(family="xlnet", type_vocab_size=0, layernorm_epsilon=1e-12, vocab_size=32000)

PRESETS = {
    # Demo / test size (BERT-tiny's shapes); configs set the vocabulary.
    "xlnet-tiny": dict(_XLNET, num_layers=2, hidden_size=128, num_attention_heads=2,
                       ffn_hidden_size=512),
    "xlnet-base": dict(_XLNET, num_layers=12, hidden_size=768, num_attention_heads=12,
                       ffn_hidden_size=3072),
    "xlnet-large": dict(_XLNET, num_layers=24, hidden_size=1024, num_attention_heads=16,
                        ffn_hidden_size=4096),
}
