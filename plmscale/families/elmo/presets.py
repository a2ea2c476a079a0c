"""ELMo sizes (tests/unit/test_elmo.py checks SPEC.md's count)."""

PRESETS = {
    # Peters et al. 2018 / allenai/bilm-tf's options.json of the original model: char CNN (261 x 16,
    # 2048 filters, 2 highways), 2 LSTMP layers per direction, 4096 cells, 512 projection.
    # 93,600,848 parameters without the softmax (allennlp: 93,600,864 with its 262-row char table).
    "elmo-original": dict(family="elmo", token_encoder="characters", num_layers=2,
                          hidden_size=512, ffn_hidden_size=4096, num_attention_heads=1,
                          hidden_dropout=0.1, attention_dropout=0.0),
    # bilm-tf's word mode at a size for CPU tests: V x 128 embedding shared with the softmax.
    "elmo-words-tiny": dict(family="elmo", token_encoder="words", num_layers=2, hidden_size=128,
                            ffn_hidden_size=512, num_attention_heads=1, tie_word_embeddings=True,
                            hidden_dropout=0.0, attention_dropout=0.0),
}
