"""The Llama family: the GPT family's decoder, pieces and samples with Llama's switches (rotary
positions, RMSNorm, SwiGLU, grouped-query attention, no biases, untied head; its
``model_defaults``), exported to HF ``LlamaForCausalLM``. ``decoder_family`` declares the MoE
decoders on the same base (``plmscale.families.mixtral``, ``plmscale.families.qwen2_moe``)."""

import dataclasses

from plmscale.export.hf import HFPart
from plmscale.families import Family, FamilyFields
from plmscale.families.gpt import FAMILY as GPT
from plmscale.families.llama.hf import hf_config, to_hf_state_dict
from plmscale.families.llama.presets import PRESETS

LLAMA_DEFAULTS = dict(normalization="rmsnorm", activation="swiglu", add_bias_linear=False,
                      position_embedding_type="rotary", tie_word_embeddings=False)


def decoder_family(name: str, model_class: str, config, presets: dict, model_fields=(),
                   model_defaults=None) -> Family:
    """A family that is the GPT decoder with Llama's switches (plus ``model_defaults``), reading
    Llama's fields plus ``model_fields``, exported to ``transformers.<model_class>`` with
    ``config`` and Llama's name map."""
    return Family(
        name=name,
        build=GPT.build,
        pieces=GPT.pieces,
        samples=GPT.samples,
        hf_config=config,
        to_hf_state_dict=to_hf_state_dict,
        fields=FamilyFields(
            model=("normalization", "activation", "add_bias_linear", "position_embedding_type",
                   "rotary_base", "num_query_groups", "tie_word_embeddings") + tuple(model_fields),
            objective=GPT.fields.objective, objective_defaults=GPT.fields.objective_defaults,
            model_defaults={**LLAMA_DEFAULTS, **(model_defaults or {})}),
        presets=presets,
        # GPT's samples, token ids and tokenizer; only the HF class differs.
        hf_export=dataclasses.replace(GPT.hf_export,
                                      parts=(HFPart(model_class, task="text-generation"),)),
        generation=GPT.generation,
    )


FAMILY = decoder_family("llama", "LlamaForCausalLM", hf_config, PRESETS)
