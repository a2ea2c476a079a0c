"""plmscale GPT-family decoder with Llama's switches <-> HF ``LlamaForCausalLM``, both ways.

Most tensors are renamed one to one (``_renames``). The fused, column-parallel ``linear_qkv`` is laid
out group by group ([group][q_1..q_{heads/groups}, k, v][head_dim], see
``plmscale.models.common.attention``) and splits into HF's ``q_proj``, ``k_proj`` and ``v_proj``.
Rotary weights need no permutation: plmscale rotates in HF's half-split form.

The MoE decoders (``plmscale.families.mixtral`` -> ``MixtralForCausalLM``,
``plmscale.families.qwen2_moe`` -> ``Qwen2MoeForCausalLM``) share every attention, norm and dense-MLP
name with Llama, so this one map serves them: on a layer with experts (``is_moe_layer``) the router
becomes ``mlp.gate``, the routed experts HF's stacked ``mlp.experts.gate_up_proj`` [E, 2 x ffn, h]
(gate rows, then up rows) and ``mlp.experts.down_proj`` [E, h, ffn], and Qwen2-MoE's shared expert and
its sigmoid gate ``mlp.shared_expert.*`` / ``mlp.shared_expert_gate``.
"""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig
from plmscale.models.common.mlp import is_moe_layer
from plmscale.models.moe import hf as moe


def decoder_config_kwargs(cfg: ModelConfig, hf_class: str = "Llama") -> dict:
    """The config arguments Llama, Mixtral and Qwen2-MoE share; refuses switches they lack."""
    fixed = {"normalization": "rmsnorm", "activation": "swiglu", "position_embedding_type": "rotary"}
    for name, value in fixed.items():
        if getattr(cfg, name) != value:
            raise ValueError(f"HF {hf_class} needs model.{name}={value!r} (got {getattr(cfg, name)!r}); "
                             f"set it, or leave it at the {cfg.family} family's default")
    return dict(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                intermediate_size=cfg.ffn_hidden_size, num_hidden_layers=cfg.num_layers,
                num_attention_heads=cfg.num_attention_heads,
                num_key_value_heads=cfg.num_query_groups or cfg.num_attention_heads,
                head_dim=cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads,
                hidden_act="silu", max_position_embeddings=cfg.max_position_embeddings,
                initializer_range=cfg.init_std, rms_norm_eps=cfg.layernorm_epsilon,
                tie_word_embeddings=cfg.tie_word_embeddings,
                rope_parameters={"rope_type": "default", "rope_theta": cfg.rotary_base},
                attention_dropout=cfg.attention_dropout,
                # plmscale tokenizers put bos/eos at their own ids; the export sets them.
                bos_token_id=None, eos_token_id=None)


def hf_config(cfg: ModelConfig):
    """The ``transformers.LlamaConfig`` with the same architecture."""
    from transformers import LlamaConfig
    moe.check_export(cfg, "LlamaForCausalLM", num_experts=(0,))
    return LlamaConfig(**decoder_config_kwargs(cfg), attention_bias=cfg.add_bias_linear,
                       mlp_bias=cfg.add_bias_linear)


def _renames(cfg: ModelConfig) -> list[tuple[str, str]]:
    """(plmscale name, HF name) of every tensor but the fused qkv (and the tied head's copy)."""
    pairs = [("gpt.embeddings.word_embeddings.weight", "model.embed_tokens.weight"),
             ("gpt.final_layernorm.weight", "model.norm.weight")]
    if not cfg.tie_word_embeddings:
        pairs.append(("output_layer.weight", "lm_head.weight"))
    kinds = ("weight", "bias") if cfg.add_bias_linear else ("weight",)
    for i in range(cfg.num_layers):
        ours, hf = f"gpt.layers.{i}.", f"model.layers.{i}."
        pairs += [(ours + "input_layernorm.weight", hf + "input_layernorm.weight"),
                  (ours + "pre_mlp_layernorm.weight", hf + "post_attention_layernorm.weight")]
        for kind in kinds:
            pairs.append((ours + f"self_attention.linear_proj.{kind}", hf + f"self_attn.o_proj.{kind}"))
        moe_layer = is_moe_layer(cfg, i)
        if moe_layer:
            pairs.append((ours + moe.ROUTER, hf + "mlp.gate.weight"))
        if moe_layer and cfg.moe_shared_experts:
            pairs += [(ours + moe.SHARED + f"{linear}.weight", hf + f"mlp.shared_expert.{proj}.weight")
                      for linear, proj in _MLP_NAMES]
        if moe_layer and cfg.moe_shared_expert_gate:
            pairs.append((ours + moe.SHARED_GATE, hf + "mlp.shared_expert_gate.weight"))
        if not moe_layer:
            pairs += [(ours + f"mlp.{linear}.{kind}", hf + f"mlp.{proj}.{kind}")
                      for linear, proj in _MLP_NAMES for kind in kinds]
    return pairs


_MLP_NAMES = (("linear_fc1", "gate_proj"), ("linear_fc1_up", "up_proj"), ("linear_fc2", "down_proj"))
"""A SwiGLU MLP's linears, plmscale -> HF (dense layers and Qwen2-MoE's shared expert)."""


def _routed_experts(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF's stacked routed-expert tensors of every layer with experts."""
    out = {}
    for i in range(cfg.num_layers):
        if is_moe_layer(cfg, i):
            ours, hf = f"gpt.layers.{i}.", f"model.layers.{i}.mlp.experts."
            out[hf + "gate_up_proj"] = moe.stacked(full, ours, cfg, "linear_fc1", "linear_fc1_up")
            out[hf + "down_proj"] = moe.stacked(full, ours, cfg, "linear_fc2")
    return out


def _qkv_names(cfg: ModelConfig):
    kinds = ("weight", "bias") if cfg.add_bias_linear else ("weight",)
    for i in range(cfg.num_layers):
        for kind in kinds:
            yield (f"gpt.layers.{i}.self_attention.linear_qkv.{kind}",
                   [f"model.layers.{i}.self_attn.{p}_proj.{kind}" for p in "qkv"])


def _grouping(cfg: ModelConfig) -> tuple[int, int]:
    groups = cfg.num_query_groups or cfg.num_attention_heads
    return groups, cfg.num_attention_heads // groups


def split_qkv(tensor: torch.Tensor, cfg: ModelConfig) -> list[torch.Tensor]:
    """Grouped rows [group][q.., k, v][d] -> HF's q [heads*d], k [groups*d], v [groups*d] rows."""
    groups, per_group = _grouping(cfg)
    grouped = tensor.reshape(groups, per_group + 2, -1, *tensor.shape[1:])
    return [grouped[:, :per_group].reshape(-1, *tensor.shape[1:]).contiguous(),
            grouped[:, per_group].reshape(-1, *tensor.shape[1:]).contiguous(),
            grouped[:, per_group + 1].reshape(-1, *tensor.shape[1:]).contiguous()]


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Inverse of ``split_qkv``."""
    groups, per_group = _grouping(cfg)
    rest = q.shape[1:]
    grouped = torch.cat([q.reshape(groups, per_group, -1, *rest), k.reshape(groups, 1, -1, *rest),
                         v.reshape(groups, 1, -1, *rest)], dim=1)
    return grouped.reshape(-1, *rest).contiguous()


def to_hf_state_dict(full: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Full (gathered, unpadded) plmscale tensors -> ``LlamaForCausalLM`` state dict (with experts:
    ``MixtralForCausalLM`` / ``Qwen2MoeForCausalLM``)."""
    out = {hf: full[ours] for ours, hf in _renames(cfg)}
    out.update(_routed_experts(full, cfg))
    if cfg.tie_word_embeddings:  # HF ties lm_head to embed_tokens but still lists it
        out["lm_head.weight"] = full["gpt.embeddings.word_embeddings.weight"]
    for ours, hf_names in _qkv_names(cfg):
        out.update(zip(hf_names, split_qkv(full[ours], cfg)))
    return out


def from_hf_state_dict(hf: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """``to_hf_state_dict`` backwards (e.g. to start from HF weights)."""
    out = {ours: hf[name] for ours, name in _renames(cfg)}
    for i in range(cfg.num_layers):
        if is_moe_layer(cfg, i):
            experts, ours = f"model.layers.{i}.mlp.experts.", f"gpt.layers.{i}."
            for e, (gate_up, down) in enumerate(zip(hf[experts + "gate_up_proj"], hf[experts + "down_proj"])):
                gate, up = gate_up.chunk(2)
                out.update({moe.expert(ours, e, "linear_fc1"): gate, moe.expert(ours, e, "linear_fc1_up"): up,
                            moe.expert(ours, e, "linear_fc2"): down})
    for ours, hf_names in _qkv_names(cfg):
        out[ours] = fuse_qkv(*(hf[n] for n in hf_names), cfg)
    return out
