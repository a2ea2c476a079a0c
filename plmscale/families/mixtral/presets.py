"""Mixtral sizes (HF ``MixtralForCausalLM``). Mixtral 8x7B's shape from its released HF config
(mistralai/Mixtral-8x7B-v0.1; Jiang et al. 2024, table 1): 32 layers, hidden 4096, 32 query heads in
8 key/value groups, expert FFN 14336 (SwiGLU), 8 experts, top-2 in every layer, RoPE base 1e6,
RMSNorm eps 1e-5, vocabulary 32000, untied head. Its HF count is ``MIXTRAL_COUNTS`` (checked on the
meta device by tests/unit/test_moe_hf.py)."""

from plmscale.families.llama.presets import PRESETS as LLAMA

_MIXTRAL = dict(num_experts=8, moe_top_k=2, moe_layer_frequency=1, moe_dropless=True)

PRESETS = {
    # Not a published size: llama-tiny with 4 experts of the dense FFN's width, top-2.
    "mixtral-tiny": {**LLAMA["llama-tiny"], **_MIXTRAL, "family": "mixtral", "num_experts": 4},
    "mixtral-8x7b": dict(LLAMA["llama-2-7b"], **_MIXTRAL, family="mixtral", num_query_groups=8,
                         ffn_hidden_size=14336, rotary_base=1e6, max_position_embeddings=32768),
}

MIXTRAL_COUNTS = {"mixtral-8x7b": 46_702_792_704}
