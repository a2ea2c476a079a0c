"""The Llama family: the GPT family's decoder, pieces and samples with Llama's switches (rotary
positions, RMSNorm, SwiGLU, grouped-query attention, no biases, untied head; its
``model_defaults``), exported to HF ``LlamaForCausalLM``."""

import dataclasses

from plmscale.export.hf import HFPart
from plmscale.families import Family, FamilyFields
from plmscale.families.gpt import FAMILY as GPT
from plmscale.families.llama.hf import hf_config, to_hf_state_dict
from plmscale.families.llama.presets import PRESETS

FAMILY = Family(
    name="llama",
    build=GPT.build,
    pieces=GPT.pieces,
    samples=GPT.samples,
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    fields=FamilyFields(
        model=("normalization", "activation", "add_bias_linear", "position_embedding_type",
               "rotary_base", "num_query_groups", "tie_word_embeddings"),
        objective=GPT.fields.objective, objective_defaults=GPT.fields.objective_defaults,
        model_defaults=dict(normalization="rmsnorm", activation="swiglu", add_bias_linear=False,
                            position_embedding_type="rotary", tie_word_embeddings=False)),
    presets=PRESETS,
    # GPT's samples, token ids and tokenizer; only the HF class differs.
    hf_export=dataclasses.replace(GPT.hf_export,
                                  parts=(HFPart("LlamaForCausalLM", task="text-generation"),)),
    generation=GPT.generation,
)
