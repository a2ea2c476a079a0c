"""ERNIE 2.0 sizes. HF count to reproduce: SPEC.md's table (tests/unit/test_ernie.py)."""

PRESETS = {
    # Sun et al. 2020 (ERNIE 2.0), section 5.2: the base model is BERT-base's size (L=12, H=768,
    # A=12); HF ErnieModel's task embedding has task_type_vocab_size rows (3 in nghuyong/ernie-2.0-
    # base-en's config: word-aware, structure-aware and semantic-aware tasks).
    "ernie-2.0-base": dict(family="ernie", num_layers=12, hidden_size=768, num_attention_heads=12,
                           ffn_hidden_size=3072, vocab_size=30522, task_type_vocab_size=3),
    "ernie-2.0-tiny": dict(family="ernie", num_layers=2, hidden_size=128, num_attention_heads=2,
                           ffn_hidden_size=512, task_type_vocab_size=3),
}
