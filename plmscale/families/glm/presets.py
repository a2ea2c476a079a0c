"""GLM sizes (Du et al. 2022, table 1 and THUDM/GLM's configs: BERT's uncased WordPiece vocabulary
plus GLM's tokens, padded to 30,592; GLM-10B: GPT-2's BPE padded to 50,304). Position and
block-position tables have max_seq + 1 rows (513; GLM-10B 1025). HF counts (``GPT2LMHeadModel`` with 513 positions
plus the 513 x hidden block table) are in SPEC.md's table (tests/unit/test_parameter_counts.py)."""

_GLM = dict(family="glm", max_position_embeddings=513, layernorm_epsilon=1e-5,
            gelu_approximate="tanh", type_vocab_size=0)

PRESETS = {
    # For CI: 2 layers, hidden 128 (as gpt-tiny).
    "glm-tiny": dict(_GLM, num_layers=2, hidden_size=128, num_attention_heads=4,
                     ffn_hidden_size=512),
    "glm-base": dict(_GLM, num_layers=12, hidden_size=768, num_attention_heads=12,
                     ffn_hidden_size=3072, vocab_size=30592),
    "glm-large": dict(_GLM, num_layers=24, hidden_size=1024, num_attention_heads=16,
                      ffn_hidden_size=4096, vocab_size=30592),
    # GLM-10B trained on 1024-token sequences: 1025-row position and block-position tables.
    "glm-10b": dict(_GLM, num_layers=48, hidden_size=4096, num_attention_heads=64,
                    ffn_hidden_size=16384, vocab_size=50304, max_position_embeddings=1025),
}
