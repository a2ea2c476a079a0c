"""Llama sizes (the GPT-family decoder with Llama's switches; HF ``LlamaForCausalLM``). Shapes from
the released HF configs (meta-llama/Llama-2-{7,13,70}b-hf: Touvron et al. 2023, table 1 and
section 2.2; TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T: Zhang et al. 2024, table 1):
RMSNorm eps 1e-5, RoPE base 10000, SwiGLU, no biases, untied head, SentencePiece vocabulary 32000,
no dropout. HF's exact counts are in ``LLAMA_COUNTS`` (tests/unit/test_llama_model.py checks them
on the meta device)."""

_LLAMA = dict(family="llama", vocab_size=32000, type_vocab_size=0, layernorm_epsilon=1e-5,
              rotary_base=10000.0, hidden_dropout=0.0, attention_dropout=0.0, init_std=0.02)

PRESETS = {
    # Not a published size: the smallest shape for tests and the CPU demo. 4 query heads in 2
    # key/value groups (GQA, TP <= 2); ffn ~ 8/3 * hidden rounded to a multiple of 32, as Llama.
    "llama-tiny": dict(_LLAMA, num_layers=2, hidden_size=128, num_attention_heads=4,
                       num_query_groups=2, ffn_hidden_size=352, max_position_embeddings=256),
    "tinyllama-1.1b": dict(_LLAMA, num_layers=22, hidden_size=2048, num_attention_heads=32,
                           num_query_groups=4, ffn_hidden_size=5632, max_position_embeddings=2048),
    "llama-2-7b": dict(_LLAMA, num_layers=32, hidden_size=4096, num_attention_heads=32,
                       ffn_hidden_size=11008, max_position_embeddings=4096),
    "llama-2-13b": dict(_LLAMA, num_layers=40, hidden_size=5120, num_attention_heads=40,
                        ffn_hidden_size=13824, max_position_embeddings=4096),
    "llama-2-70b": dict(_LLAMA, num_layers=80, hidden_size=8192, num_attention_heads=64,
                        num_query_groups=8, ffn_hidden_size=28672, max_position_embeddings=4096),
}

# HF LlamaForCausalLM parameter counts of these shapes (the released checkpoints' totals).
LLAMA_COUNTS = {"tinyllama-1.1b": 1_100_048_384, "llama-2-7b": 6_738_415_616,
                "llama-2-13b": 13_015_864_320, "llama-2-70b": 68_976_648_192}
