"""plmscale GLM -> HF ``GPT2LMHeadModel`` (n_positions = max_seq + 1) plus GLM's block-position
table, which GPT-2 lacks: it is written next to the model as ``block_position_embeddings.safetensors``
(tensor ``weight`` [max_seq + 1, hidden]). The HF forward of a GLM sample is then

    embeds = model.transformer.wte(input_ids) + block_table[block_position_ids]
    model(inputs_embeds=embeds, position_ids=position_ids, attention_mask=float_4d_mask)

with the mask of ``plmscale.objectives.blank_infilling.glm_attention_mask`` as 0 / finfo.min.
"""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.families.gpt.hf import hf_config  # noqa: F401  (the same GPT2Config)
from plmscale.families.gpt.hf import to_hf_state_dict as gpt2_state_dict

BLOCK_POSITION_FILE = "block_position_embeddings.safetensors"


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The ``GPT2LMHeadModel`` tensors of a GLM (everything but the block-position table)."""
    return gpt2_state_dict(full, cfg, prefix="glm.")


def block_position_tensors(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict:
    """The file ``BLOCK_POSITION_FILE``'s tensors: {"weight": the block-position table}."""
    return {"weight": full["glm.embeddings.token_type_embeddings.weight"].contiguous()}
