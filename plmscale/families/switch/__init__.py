"""The Switch Transformer family (Fedus et al. 2022): T5 (model, pieces, samples, span corruption)
with top-1 expert layers every other layer, exported to HF
``SwitchTransformersForConditionalGeneration``."""

import dataclasses

from plmscale.export.hf import HFPart
from plmscale.families.switch.hf import hf_config, to_hf_state_dict
from plmscale.families.switch.presets import PRESETS
from plmscale.families.t5 import FAMILY as T5

FAMILY = dataclasses.replace(
    T5, name="switch", hf_config=hf_config, to_hf_state_dict=to_hf_state_dict, from_hf_config=None,
    fields=dataclasses.replace(T5.fields, model_defaults=dict(
        num_experts=8, moe_top_k=1, moe_layer_frequency=2, activation="relu",
        normalization="rmsnorm", add_bias_linear=False, position_embedding_type="relative")),
    presets=PRESETS,
    hf_export=dataclasses.replace(T5.hf_export, parts=(
        HFPart("SwitchTransformersForConditionalGeneration", task="text2text-generation"),)))
