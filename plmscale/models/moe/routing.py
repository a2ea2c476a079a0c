"""Routing records -> the pieces' state -> the loss and the metrics.

Every piece that ran MoE blocks adds their records to the state it hands on (``carry_routing``, called
by ``plmscale.families.pieces.run_piece`` for the ordinary model and pipeline stages alike): the
weighted auxiliary losses summed into ``moe_loss`` (a float scalar with its graph, so it crosses
pipeline stages through the one packer and its gradient flows back), and per layer detached metrics.
The last piece's metrics then get ``loss += moe_loss`` and the routing metrics:

* ``moe_aux_loss`` / ``moe_z_loss``: sums over MoE layers of the unweighted losses;
* ``<layer>.moe_aux`` / ``.moe_z`` / ``.moe_dropped_fraction`` / ``.moe_load_max_over_mean`` per
  MoE layer (``<layer>`` = the layer's path, e.g. ``gpt.layers.1``), for TensorBoard;
* ``moe_dropped_fraction`` (mean over layers) and ``moe_load_max_over_mean`` (max over layers) for
  the progress line.
"""

from __future__ import annotations

import torch
from torch import nn

from plmscale.models.moe.layer import MoEFeedForward

SUMMARY = ("moe_aux_loss", "moe_z_loss", "moe_dropped_fraction", "moe_load_max_over_mean")
PER_LAYER = {"moe_aux": "aux_loss", "moe_z": "z_loss", "moe_dropped_fraction": "dropped_fraction",
             "moe_load_max_over_mean": "load_max_over_mean"}


def _per_layer(key: str) -> str | None:
    """The per-layer metric a state key holds ("gpt.layers.1.moe_aux" -> "moe_aux"), else None."""
    suffix = key.rsplit(".", 1)[-1]
    return suffix if "." in key and suffix in PER_LAYER else None


def _moe_blocks(path: str, module: nn.Module) -> list[tuple[str, MoEFeedForward]]:
    """(layer path, block) of every MoE block inside ``module``, which sits at ``path``."""
    found = getattr(module, "_plmscale_moe_blocks", None)
    if found is None:
        found = [(path, m) if not n else (f"{path}.{n}".removesuffix(".mlp"), m)
                 for n, m in module.named_modules() if isinstance(m, MoEFeedForward)]
        module._plmscale_moe_blocks = found  # a plain attribute: modules do not change after build
    return found


def carry_routing(paths, modules, state: dict, out: dict) -> dict:
    """``out`` (a piece's result from ``state``) with the routing records its ``modules`` (at
    ``paths``) left; when ``out`` is the last piece's metrics (it has "loss"), also the records of
    earlier pieces (in ``state``), the auxiliary losses added to the loss, and the summaries."""
    blocks = [b for path, module in zip(paths, modules) for b in _moe_blocks(path, module)]
    final = "loss" in out
    if not blocks and not (final and "moe_loss" in state):
        return out
    out = dict(out)
    if final:
        out.update({k: v for k, v in state.items()
                    if k == "moe_loss" or _per_layer(k)})
    for layer, block in blocks:
        routing, block.routing = block.routing, None
        if routing is None:  # a module of this piece that another piece ran (ties)
            continue
        out["moe_loss"] = out.get("moe_loss", 0.0) + routing.weighted
        for key, field in PER_LAYER.items():
            out[f"{layer}.{key}"] = getattr(routing, field).detach()
    if final:
        out["loss"] = out["loss"] + out.pop("moe_loss")
        for key in PER_LAYER:
            values = torch.stack([v for k, v in out.items() if _per_layer(k) == key])
            reduce = torch.max if key == "moe_load_max_over_mean" else (
                torch.mean if key == "moe_dropped_fraction" else torch.sum)
            out[SUMMARY[list(PER_LAYER).index(key)]] = reduce(values)
    return out
