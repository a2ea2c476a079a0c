"""The Qwen2-MoE family: the Llama decoder with fine-grained routed experts plus a shared expert
scaled by a sigmoid gate (``plmscale.models.moe``), exported to HF ``Qwen2MoeForCausalLM``."""

from plmscale.families import MOE_FIELDS
from plmscale.families.llama import decoder_family
from plmscale.families.qwen2_moe.hf import hf_config
from plmscale.families.qwen2_moe.presets import PRESETS

FAMILY = decoder_family("qwen2_moe", "Qwen2MoeForCausalLM", hf_config, PRESETS, MOE_FIELDS,
                        dict(num_experts=8, moe_top_k=2, moe_shared_experts=1,
                             moe_shared_expert_gate=True, moe_dropless=True))
