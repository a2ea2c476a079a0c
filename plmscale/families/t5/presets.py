"""T5 sizes. HF counts to reproduce are in SPEC.md's table (tests/unit/test_t5_parameter_counts.py).

Raffel et al. 2020, table 14 / section 3.7 and the released configs: t5-small 6+6 layers, d_model 512,
8 heads of d_kv 64, d_ff 2048; t5-base 12+12, 768, 12 heads, 3072; t5-large 24+24, 1024, 16 heads, 4096;
vocabulary 32128 (32000 sentencepiece pieces + 100 sentinels, padded to a multiple of 128).
T5 v1.1 (google/t5-v1_1-* configs): gated-GELU FFN, no dropout in pretraining, untied LM head, no
output scaling; base 12+12, 768, 12 heads, d_ff 2048; large 24+24, 1024, 16 heads, d_ff 2816.
"""

_T5 = dict(family="t5", init_method="t5", vocab_size=32128, max_position_embeddings=512,
           type_vocab_size=0, layernorm_epsilon=1e-6, normalization="rmsnorm", add_bias_linear=False,
           position_embedding_type="relative", relative_attention_num_buckets=32,
           relative_attention_max_distance=128, kv_channels=64, gelu_approximate="tanh")
_V1_0 = dict(_T5, activation="relu", tie_word_embeddings=True, scale_tied_logits=True)
_V1_1 = dict(_T5, activation="gated-gelu", tie_word_embeddings=False, scale_tied_logits=False,
             hidden_dropout=0.0, attention_dropout=0.0)

PRESETS = {
    "t5-small": dict(_V1_0, num_layers=6, num_decoder_layers=6, hidden_size=512,
                     num_attention_heads=8, ffn_hidden_size=2048),
    "t5-base": dict(_V1_0, num_layers=12, num_decoder_layers=12, hidden_size=768,
                    num_attention_heads=12, ffn_hidden_size=3072),
    "t5-large": dict(_V1_0, num_layers=24, num_decoder_layers=24, hidden_size=1024,
                     num_attention_heads=16, ffn_hidden_size=4096),
    "t5-v1_1-base": dict(_V1_1, num_layers=12, num_decoder_layers=12, hidden_size=768,
                         num_attention_heads=12, ffn_hidden_size=2048),
    "t5-v1_1-large": dict(_V1_1, num_layers=24, num_decoder_layers=24, hidden_size=1024,
                          num_attention_heads=16, ffn_hidden_size=2816),
    # A 2+2-layer v1.0 model for CPU runs and tests (the demo tokenizer has 8000 pieces).
    "t5-tiny": dict(_V1_0, num_layers=2, num_decoder_layers=2, hidden_size=128,
                    num_attention_heads=4, kv_channels=32, ffn_hidden_size=512, vocab_size=8000),
}
