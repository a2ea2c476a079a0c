"""The Llama family: the GPT family's decoder, pieces and samples with Llama's switches (rotary
positions, RMSNorm, SwiGLU, grouped-query attention, no biases, untied head; the defaults of
``FAMILY_FIELDS["llama"]``), exported to HF ``LlamaForCausalLM``."""

from plmscale.export.llama import hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.gpt import FAMILY as GPT

FAMILY = Family(
    name="llama",
    build=GPT.build,
    pieces=GPT.pieces,
    samples=GPT.samples,
    hf_config=hf_config,
    hf_model_class="LlamaForCausalLM",
    to_hf_state_dict=to_hf_state_dict,
)
