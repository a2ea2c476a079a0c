"""ELECTRA sizes (Clark et al. 2020). Discriminator counts equal HF ``ElectraForPreTraining`` and
SPEC.md's table; generator counts are checked against HF ``ElectraForMaskedLM`` built from the same
config (tests/unit/test_electra_model.py).

Generator sizes follow the released HF checkpoints google/electra-{small,base,large}-generator
(config.json: hidden 256, 4 heads, intermediate 1024; 12/12/24 layers; embedding size = the
discriminator's, 128/768/1024). For base (256/768 = 1/3) and large (256/1024 = 1/4) this is the
paper's Table 6 generator multiplier. For small, the released generator is as wide as the
discriminator (hidden 256) rather than the paper's 1/4 (hidden 64, one head); we follow the release,
whose weights can be compared with ours (and a one-head generator could not be split over TP ranks).
"""

_GENERATOR = dict(generator_hidden_size=256, generator_num_attention_heads=4,
                  generator_ffn_hidden_size=1024)

PRESETS = {
    # Test/demo size: 2 layers, factorised embeddings (E=64 -> 128) so the projections are exercised;
    # the generator is 1/4 of the discriminator's width.
    "electra-tiny": dict(family="electra", num_layers=2, hidden_size=128, num_attention_heads=4,
                         ffn_hidden_size=512, embedding_size=64, generator_hidden_size=32,
                         generator_num_attention_heads=2, generator_ffn_hidden_size=128),
    # Paper Table 6 / HF google/electra-small-discriminator: L=12, H=256, A=4, FFN=1024, E=128.
    "electra-small": dict(family="electra", num_layers=12, hidden_size=256, num_attention_heads=4,
                          ffn_hidden_size=1024, embedding_size=128, vocab_size=30522, **_GENERATOR),
    # HF google/electra-base-discriminator: L=12, H=768, A=12, FFN=3072 (E = H).
    "electra-base": dict(family="electra", num_layers=12, hidden_size=768, num_attention_heads=12,
                         ffn_hidden_size=3072, embedding_size=768, vocab_size=30522, **_GENERATOR),
    # HF google/electra-large-discriminator: L=24, H=1024, A=16, FFN=4096 (E = H).
    "electra-large": dict(family="electra", num_layers=24, hidden_size=1024, num_attention_heads=16,
                          ffn_hidden_size=4096, embedding_size=1024, vocab_size=30522, **_GENERATOR),
}
