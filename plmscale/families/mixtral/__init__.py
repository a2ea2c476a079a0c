"""The Mixtral family: the Llama decoder with top-2 routed SwiGLU experts in every layer
(``plmscale.models.moe`` on DeepSpeed's MoE), exported to HF ``MixtralForCausalLM``."""

from plmscale.families import MOE_FIELDS
from plmscale.families.llama import decoder_family
from plmscale.families.mixtral.hf import hf_config
from plmscale.families.mixtral.presets import PRESETS

FAMILY = decoder_family("mixtral", "MixtralForCausalLM", hf_config, PRESETS, MOE_FIELDS,
                        dict(num_experts=8, moe_top_k=2, moe_dropless=True))
