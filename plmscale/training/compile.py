"""``train.compile``: ``torch.compile`` of each transformer layer, as torchtitan does it.

Each module a ``layer=True`` piece runs (``plmscale.families.pieces``) gets its ``forward`` compiled
in place (its parameter names and state dict stay as they are, so checkpoints, export and
re-slicing do not see the option), one layer at a time rather than the whole model: every layer of
a stack has the same code and shapes, so Dynamo traces one and reuses its graph for the rest, and
the embeddings, heads and losses (data-dependent shapes such as BERT's masked positions) stay eager.
The same modules are found in the ordinary model and in every pipeline stage, so all layouts get it.

Randomness. Inductor does not replay torch's eager dropout stream: a compiled graph draws one seed
from the default generator per call and generates its masks from it (Philox). The masks therefore
differ from an eager run's, but they are still a function of the seeded generator, so a compiled
run is reproducible run to run with the same ``train.seed`` and resumes exactly (the training loop
reseeds every step, ``plmscale.training.loop``). The per-TP-rank stream that tensor parallelism
swaps in for dropout on split activations (``plmscale.parallel.random.tensor_parallel_rng``) is not
swapped inside a compiled layer, which is right only because TP is one rank there:

Tensor parallelism is refused (``plmscale.config.validation.check_compile``): megatron-core's
tensor-parallel linear all-reduces its input gradient with ``async_op=True`` inside its autograd
Function's backward, which Dynamo cannot trace (measured with torch 2.13, megatron-core 0.16.1);
replacing that Function is more than this option is worth on the CPU (bench/RESULTS.md).
"""

from __future__ import annotations

import torch
from torch import nn

from plmscale.families.pieces import PiecewiseModel
from plmscale.parallel.pipeline import PiecewisePipeline


def layer_modules(model: nn.Module) -> list[nn.Module]:
    """The modules the transformer-layer pieces run, each once (ALBERT's shared layer is one), for
    the ordinary model (a ``PiecewiseModel``) or this rank's pipeline stages."""
    if isinstance(model, PiecewiseModel):
        holders = [(model, piece) for piece in model.pieces]
    elif isinstance(model, PiecewisePipeline):
        holders = [(stage, stage.piece) for stage in model.layers_with_state() if hasattr(stage, "piece")]
    else:
        raise TypeError(f"train.compile: {type(model).__name__} is not a plmscale model of pieces")
    found: dict[int, nn.Module] = {}
    for holder, piece in holders:
        if piece.layer:
            for path in piece.modules:
                module = holder.get_submodule(path)
                found.setdefault(id(module), module)
    return list(found.values())


def compile_layers(model: nn.Module) -> int:
    """Compile every transformer layer of ``model`` in place; returns how many were compiled.

    ``fullgraph``: a graph break inside a layer is an error, not a silent slow path. Static shapes
    (``dynamic=False``): a run's batches have one shape (an encoder-decoder's two stacks one each),
    so each layer code gets a graph per shape with concrete sizes, and no symbolic length reaches
    arguments that must be plain Python values (SDPA's ``is_causal``)."""
    layers = layer_modules(model)
    for layer in layers:
        _compile_forward(layer)
    return len(layers)


def _compile_forward(layer: nn.Module) -> None:
    """Compile ``layer.forward`` in place, except calls with ``rows`` (BERT's last layer computing
    only the positions its losses read, ``plmscale.families.bert.model.query_rows``): their count
    changes every step, so static shapes would recompile each step until Dynamo's recompile limit
    turns the shared layer code eager for every layer. That one layer per stack stays eager."""
    eager = layer.forward
    compiled = torch.compile(eager, fullgraph=True, dynamic=False)

    def forward(*args, rows=None, **kwargs):
        if rows is not None:
            return eager(*args, rows=rows, **kwargs)
        return compiled(*args, **kwargs)
    layer.forward = forward
