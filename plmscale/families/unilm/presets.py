"""UniLM sizes (Dong et al. 2019; microsoft/unilm, unilm1-base-cased / unilm1-large-cased: BERT-cased
vocabulary of 28,996, six token types). HF counts (``BertForPreTraining``) are in SPEC.md's table
(tests/unit/test_parameter_counts.py)."""

_UNILM = dict(family="unilm", vocab_size=28996, type_vocab_size=6, max_position_embeddings=512)

PRESETS = {
    # For CI: BERT-tiny's shape (Turc et al. 2019) with UniLM's six token types.
    "unilm-tiny": dict(_UNILM, num_layers=2, hidden_size=128, num_attention_heads=2,
                       ffn_hidden_size=512),
    # The paper's section 3: "the same as BERT-large"; unilm1-base-cased is the BERT-base shape.
    "unilm-base-cased": dict(_UNILM, num_layers=12, hidden_size=768, num_attention_heads=12,
                             ffn_hidden_size=3072),
    "unilm-large-cased": dict(_UNILM, num_layers=24, hidden_size=1024, num_attention_heads=16,
                              ffn_hidden_size=4096),
}
