"""GPT-2 sizes (Radford et al. 2019, table 2; n_positions 1024, vocabulary 50257 byte-level BPE).
HF ``GPT2LMHeadModel`` counts to reproduce are in SPEC.md's table (tests/unit/test_gpt_parameters.py).
GPT-2 architecture details: pre-LN, GELU tanh form, LayerNorm eps 1e-5, dropout 0.1, no token types."""

_GPT2 = dict(family="gpt", vocab_size=50257, max_position_embeddings=1024, type_vocab_size=0,
             layernorm_epsilon=1e-5, gelu_approximate="tanh", hidden_dropout=0.1,
             attention_dropout=0.1, init_std=0.02)

PRESETS = {
    # Not a published size: the smallest shape for tests and the CPU demo (4 heads split by TP <= 4).
    "gpt-tiny": dict(_GPT2, num_layers=2, hidden_size=128, num_attention_heads=4,
                     ffn_hidden_size=512, max_position_embeddings=256),
    # The paper reports 117M / 345M / 762M / 1542M; HF's exact counts of these shapes are in SPEC.md.
    "gpt2": dict(_GPT2, num_layers=12, hidden_size=768, num_attention_heads=12,
                 ffn_hidden_size=3072),
    "gpt2-medium": dict(_GPT2, num_layers=24, hidden_size=1024, num_attention_heads=16,
                        ffn_hidden_size=4096),
    "gpt2-large": dict(_GPT2, num_layers=36, hidden_size=1280, num_attention_heads=20,
                       ffn_hidden_size=5120),
    "gpt2-xl": dict(_GPT2, num_layers=48, hidden_size=1600, num_attention_heads=25,
                    ffn_hidden_size=6400),
}
