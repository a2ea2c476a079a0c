"""Switch Transformer sizes (HF ``SwitchTransformersForConditionalGeneration``): T5 v1.0 shapes with
top-1 expert layers every other layer of the encoder and of the decoder (Fedus et al. 2022,
section 5 and table 9; google/switch-base-8's HF config: t5-base's shape, vocabulary 32128, 8
experts)."""

from plmscale.families.t5.presets import PRESETS as T5

_SWITCH = dict(family="switch", moe_top_k=1, moe_layer_frequency=2)

PRESETS = {
    # Not a published size: t5-tiny with 4 experts.
    "switch-tiny": dict(T5["t5-tiny"], **_SWITCH, num_experts=4),
    "switch-base-8": dict(T5["t5-base"], **_SWITCH, num_experts=8),
}
