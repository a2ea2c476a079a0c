"""MPNet sizes (Song et al. 2020, section 3.1: BERT-base shapes, 30,527-piece vocabulary), RoBERTa-
style positions (offset 2: HF's 514 rows for 512 tokens), no token types, LayerNorm eps 1e-5, one
relative-bias table (32 buckets, max distance 128). HF count (``MPNetForMaskedLM``): mpnet-base
109,518,527 (SPEC.md / tests/unit)."""

_MPNET = dict(family="mpnet", type_vocab_size=0, position_offset=2, layernorm_epsilon=1e-5,
              max_position_embeddings=512, relative_attention_num_buckets=32,
              relative_attention_max_distance=128)

PRESETS = {
    # Demo / test size (BERT-tiny's shapes); configs set the vocabulary.
    "mpnet-tiny": dict(_MPNET, num_layers=2, hidden_size=128, num_attention_heads=2,
                       ffn_hidden_size=512),
    "mpnet-base": dict(_MPNET, num_layers=12, hidden_size=768, num_attention_heads=12,
                       ffn_hidden_size=3072, vocab_size=30527),
}
