"""Qwen2-MoE-shaped sizes (HF ``Qwen2MoeForCausalLM``). Not published sizes: the released
Qwen1.5-MoE-A2.7B has q/k/v biases, which plmscale's decoder does not build (see
``plmscale.families.qwen2_moe.hf``); the tiny shape keeps its structure: fine-grained experts (a
quarter of the dense width), top-4, one shared expert of 4 expert widths behind a sigmoid gate."""

from plmscale.families.llama.presets import PRESETS as LLAMA

PRESETS = {
    "qwen2-moe-tiny": dict(LLAMA["llama-tiny"], family="qwen2_moe", num_experts=8, moe_top_k=4,
                           moe_ffn_hidden_size=88, moe_shared_experts=4,
                           moe_shared_expert_gate=True, moe_dropless=True),
}
