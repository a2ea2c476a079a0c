"""ALBERT sizes (Lan et al. 2019, table 1; the v2 settings of the released configs: no dropout,
gelu_new = GELU's tanh form): E=128 factorised embeddings, one shared layer set, 30,000-piece
sentencepiece vocabulary. HF counts: SPEC.md / tests/unit. Objective settings (SOP, n-gram masking)
are in configs/albert_*.yaml, since presets hold model fields only."""

_ALBERT = dict(family="albert", embedding_size=128, share_layer_parameters=True,
               gelu_approximate="tanh", hidden_dropout=0.0, attention_dropout=0.0,
               vocab_size=30000, max_position_embeddings=512, type_vocab_size=2,
               layernorm_epsilon=1e-12)

PRESETS = {
    # Demo / test size: 4 applications of one 128-wide layer, E=64; configs set the vocabulary.
    "albert-tiny": dict(_ALBERT, num_layers=4, hidden_size=128, num_attention_heads=2,
                        ffn_hidden_size=512, embedding_size=64),
    "albert-base": dict(_ALBERT, num_layers=12, hidden_size=768, num_attention_heads=12,
                        ffn_hidden_size=3072),
    "albert-large": dict(_ALBERT, num_layers=24, hidden_size=1024, num_attention_heads=16,
                         ffn_hidden_size=4096),
    "albert-xlarge": dict(_ALBERT, num_layers=24, hidden_size=2048, num_attention_heads=16,
                          ffn_hidden_size=8192),
    "albert-xxlarge": dict(_ALBERT, num_layers=12, hidden_size=4096, num_attention_heads=64,
                           ffn_hidden_size=16384),
}
