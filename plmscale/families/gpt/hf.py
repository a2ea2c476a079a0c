"""plmscale GPT -> HF ``GPT2LMHeadModel`` state dicts.

HF GPT-2 uses ``Conv1D`` layers, whose weights are stored [in, out] (transposed against
``nn.Linear``), and packs attention as [q | k | v] along the output dimension; plmscale's fused qkv
is head-interleaved ([head][q, k, v][head_dim]) so that a TP slice holds whole heads.
"""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.models.common.cross_attention import split_heads


# ModelConfig field -> GPT2Config attribute (both directions).
CONFIG_NAMES = dict(vocab_size="vocab_size", max_position_embeddings="n_positions",
                    hidden_size="n_embd", num_layers="n_layer", num_attention_heads="n_head",
                    ffn_hidden_size="n_inner", hidden_dropout="resid_pdrop",
                    attention_dropout="attn_pdrop", layernorm_epsilon="layer_norm_epsilon",
                    init_std="initializer_range")


def hf_config(cfg: ModelConfig):
    """The ``transformers.GPT2Config`` with the same architecture."""
    from transformers import GPT2Config
    if cfg.gelu_approximate != "tanh":
        raise ValueError("HF GPT-2 uses the tanh form of GELU; set model.gelu_approximate=tanh")
    return GPT2Config(**{hf: getattr(cfg, ours) for ours, hf in CONFIG_NAMES.items()},
                      activation_function="gelu_new", embd_pdrop=cfg.hidden_dropout,
                      tie_word_embeddings=True,
                      # GPT-2's 50256 is its BPE's <|endoftext|>; plmscale tokenizers put eos
                      # elsewhere, so the ids are left to the caller (generate.py looks them up).
                      bos_token_id=None, eos_token_id=None)


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig,
                     prefix: str = "gpt.") -> dict[str, torch.Tensor]:
    """Map full (gathered, unpadded) plmscale tensors to ``GPT2LMHeadModel`` names. ``prefix``:
    the decoder's path in the model (GLM's is "glm.")."""
    out = {"transformer.wte.weight": full[f"{prefix}embeddings.word_embeddings.weight"],
           "transformer.wpe.weight": full[f"{prefix}embeddings.position_embeddings.weight"],
           "transformer.ln_f.weight": full[f"{prefix}final_layernorm.weight"],
           "transformer.ln_f.bias": full[f"{prefix}final_layernorm.bias"],
           "lm_head.weight": full[f"{prefix}embeddings.word_embeddings.weight"]}
    heads = cfg.num_attention_heads
    for i in range(cfg.num_layers):
        ours, hf = f"{prefix}layers.{i}.", f"transformer.h.{i}."
        for kind in ("weight", "bias"):
            out[hf + f"ln_1.{kind}"] = full[ours + f"input_layernorm.{kind}"]
            out[hf + f"ln_2.{kind}"] = full[ours + f"pre_mlp_layernorm.{kind}"]
        # Conv1D stores [in, out]: transpose every Linear weight; biases are unchanged.
        qkv = [torch.cat(split_heads(full[ours + f"self_attention.linear_qkv.{kind}"], heads, 3))
               for kind in ("weight", "bias")]  # HF packs [q | k | v]
        out[hf + "attn.c_attn.weight"], out[hf + "attn.c_attn.bias"] = qkv[0].t().contiguous(), qkv[1]
        for mine, theirs in (("self_attention.linear_proj", "attn.c_proj"),
                             ("mlp.linear_fc1", "mlp.c_fc"), ("mlp.linear_fc2", "mlp.c_proj")):
            out[hf + f"{theirs}.weight"] = full[ours + f"{mine}.weight"].t().contiguous()
            out[hf + f"{theirs}.bias"] = full[ours + f"{mine}.bias"]
    return out


def from_hf_config(hf) -> dict:
    """ModelConfig fields of an HF ``GPT2Config`` (the reverse of ``hf_config``)."""
    return {**{ours: getattr(hf, theirs) for ours, theirs in CONFIG_NAMES.items()},
            "ffn_hidden_size": hf.n_inner or 4 * hf.n_embd, "gelu_approximate": "tanh"}
