"""DistilBERT sizes (Sanh et al. 2019): BERT's width with half its depth, no token types. HF
``DistilBertForMaskedLM`` counts are checked in tests/unit/test_distilbert_model.py."""

PRESETS = {
    # Student of a 4-layer bert-tiny-width teacher (bert-tiny with model.num_layers=4).
    "distilbert-tiny": dict(family="distilbert", num_layers=2, hidden_size=128, num_attention_heads=2,
                            ffn_hidden_size=512, type_vocab_size=0),
    # Sanh et al. 2019 / HF distilbert-base-uncased: 6 x 768, 12 heads, FFN 3072, vocab 30522
    # (66,985,530 parameters in DistilBertForMaskedLM); the student of bert-base.
    "distilbert-base": dict(family="distilbert", num_layers=6, hidden_size=768, num_attention_heads=12,
                            ffn_hidden_size=3072, vocab_size=30522, type_vocab_size=0),
}
