"""A model declared once as ordered pieces, for the ordinary forward and for pipeline stages alike.

A family lists its pieces (embeddings, one piece per transformer layer, head + loss). Each piece names
the modules it runs by their path in the model ("bert.layers.3") with a constructor, and a ``run``
that turns the *state* (a dict of tensors, starting as the batch) into the next state; the last
piece returns the metrics ({"loss", "*_loss", "*_accuracy"}). ``PiecewiseModel`` builds every module
once and runs the pieces in order; ``plmscale.parallel.pipeline.PiecewisePipeline`` turns the same
list into DeepSpeed stages whose parameters keep the same paths.

A module that more than one piece runs (a word embedding reused by the output layer, ALBERT's shared
layer) is one module in the model and one DeepSpeed ``TiedLayerSpec`` under pipelining; such a piece
runs only that module. Its first piece must use all of it (later stages hold spare copies of the
parts they do not use, which are never read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class Piece:
    modules: dict[str, Callable[[], nn.Module]]
    """Path in the model -> constructor of the module there (called once per path)."""
    run: Callable[..., dict]
    """``run(*modules in the order above, state) -> state`` (the last piece: -> metrics)."""
    layer: bool = False
    """A transformer layer: pipeline stages get equal numbers of them."""
    tie: tuple[str, ...] | None = None
    """For a module run by several pieces: the parameters this piece reads, which every stage's copy
    keeps equal (the union over its pieces; None on all of them = all parameters)."""


def place(root: nn.Module, path: str, module: nn.Module, lists: bool = True) -> None:
    """Register ``module`` at the dotted ``path`` under ``root``, creating empty containers on the
    way (``ModuleList`` where the next part is a number and ``lists``, else plain modules)."""
    *parents, last = path.split(".")
    node = root
    for i, part in enumerate(parents):
        if part not in node._modules:
            numbered = (parents + [last])[i + 1].isdigit()
            node.add_module(part, nn.ModuleList() if numbered and lists else nn.Module())
        node = node._modules[part]
    if isinstance(node, nn.ModuleList):
        if int(last) != len(node):
            raise ValueError(f"{path}: numbered modules must be declared in order")
        node.append(module)
    else:
        node.add_module(last, module)


def run_piece(piece: Piece, root: nn.Module, state):
    """One piece on the modules under ``root`` (the model, or a pipeline stage holding them). What
    its mixture-of-experts blocks report joins the state (and, at the end, the loss and metrics:
    ``plmscale.models.moe.routing``)."""
    from plmscale.models.moe.routing import carry_routing
    modules = [root.get_submodule(path) for path in piece.modules]
    return carry_routing(list(piece.modules), modules, state, piece.run(*modules, state))


class PiecewiseModel(nn.Module):
    """The ordinary model: every piece's modules at their paths; ``forward(batch)`` runs the pieces
    in order and returns the last one's metrics. ``cfg``: its model config, kept as ``self.cfg``
    (the families' logits and generation methods read it)."""

    def __init__(self, pieces: list[Piece], cfg):
        super().__init__()
        self.pieces, self.cfg = pieces, cfg
        for piece in pieces:
            for path, build in piece.modules.items():
                try:
                    self.get_submodule(path)
                except AttributeError:
                    place(self, path, build())

    def forward(self, batch: dict) -> dict:
        return self.run(batch, self.pieces)

    def pieces_under(self, prefix: str) -> list[Piece]:
        """The pieces whose (first) module lies under ``prefix`` ("encoder."): one sub-network."""
        return [p for p in self.pieces if next(iter(p.modules)).startswith(prefix)]

    def run(self, state: dict, pieces: list[Piece]) -> dict:
        """The state after running ``pieces`` (e.g. the encoder's) on ``state``."""
        state = {k: v for k, v in state.items() if v is not None}
        for piece in pieces:
            state = run_piece(piece, self, state)
        return state
