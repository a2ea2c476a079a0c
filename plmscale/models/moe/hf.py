"""Names of the MoE block's tensors, for the Hugging Face name maps of the families with experts
(``plmscale/families/{llama,switch}/hf.py``).

Full tensors (``plmscale.export.shards`` / ``plmscale.export.gather``) hold every routed expert under
its global index: ``<layer>.mlp.moe.deepspeed_moe.experts.deepspeed_experts.<e>.<linear>.weight``.
"""

from __future__ import annotations

import torch

from plmscale.config.schema import ModelConfig

ROUTER = "mlp.moe.deepspeed_moe.gate.wg.weight"
"""The router's [num_experts, hidden] weight, relative to the layer."""
SHARED = "mlp.shared_expert."
SHARED_GATE = "mlp.shared_expert_gate.weight"


def expert(layer: str, index: int, linear: str) -> str:
    """Full name of expert ``index``'s ``linear`` weight in the layer at ``layer`` (ends with ".")."""
    return f"{layer}mlp.moe.deepspeed_moe.experts.deepspeed_experts.{index}.{linear}.weight"


def stacked(full: dict[str, torch.Tensor], layer: str, cfg: ModelConfig, *linears: str) -> torch.Tensor:
    """[num_experts, rows, cols]: per expert, its ``linears`` weights concatenated along the rows
    (HF's fused ``gate_up_proj`` = fc1 (gate) then fc1_up (up))."""
    return torch.stack([torch.cat([full[expert(layer, e, name)] for name in linears])
                        for e in range(cfg.num_experts)])


def check_export(cfg: ModelConfig, hf_class: str, **allowed) -> None:
    """Refuse settings the HF class cannot hold: ``allowed`` maps a model field to its valid values
    (a tuple or a range)."""
    for name, values in allowed.items():
        if getattr(cfg, name) not in values:
            text = (f"{values.start}..{values.stop - 1}" if isinstance(values, range)
                    else " or ".join(map(repr, values)))
            raise ValueError(f"HF {hf_class} needs model.{name} in {text} (got "
                             f"{getattr(cfg, name)!r}); set it, or use another model.family")
