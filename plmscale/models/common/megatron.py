"""Bridge from plmscale's ``ModelConfig`` to what megatron-core's tensor-parallel layers need."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from megatron.core import ModelParallelConfig
from megatron.core import parallel_state as ps
from megatron.core import tensor_parallel
from megatron.core.tensor_parallel import (ColumnParallelLinear, RowParallelLinear,
                                           VocabParallelEmbedding)

from plmscale.config.schema import ModelConfig

PARAM_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def megatron_config(precision: str = "fp32") -> ModelParallelConfig:
    """A ``ModelParallelConfig`` for the current process groups.

    Weights are allocated on the CPU without megatron's own initialisation: plmscale initialises them
    itself, layout-independently (``plmscale.parallel.initialize_parameters``), then moves the model.
    """
    return ModelParallelConfig(
        tensor_model_parallel_size=ps.get_tensor_model_parallel_world_size(),
        pipeline_model_parallel_size=ps.get_pipeline_model_parallel_world_size(),
        params_dtype=torch.float32,
        pipeline_dtype=PARAM_DTYPES[precision],
        use_cpu_initialization=True,
        perform_initialization=False,
        gradient_accumulation_fusion=False,
    )


def padded_vocab_size(cfg: ModelConfig, tensor_parallel_size: int) -> int:
    """Vocabulary rounded up to a multiple of ``make_vocab_size_divisible_by * tp`` (as Megatron), so
    each TP rank holds an equal slice of the embedding."""
    multiple = cfg.make_vocab_size_divisible_by * tensor_parallel_size
    return int(math.ceil(cfg.vocab_size / multiple) * multiple)


def tp_world() -> tuple[int, int]:
    """(tensor-parallel rank, tensor-parallel size) of this process."""
    return ps.get_tensor_model_parallel_rank(), ps.get_tensor_model_parallel_world_size()


def _mark(param: torch.nn.Parameter, dim: int) -> None:
    # megatron-core only tags partitioned weights when it initialises them itself; plmscale
    # initialises layout-independently, so tag them here (gathering, counting, clipping read the tags).
    tensor_parallel.set_tensor_model_parallel_attributes(param, True, dim, 1)


class _BiasInGemmOnOneRank:
    """At tensor-parallel size 1, one ``F.linear`` (an ``addmm``: the bias added inside the GEMM)
    instead of megatron-core's path, which multiplies, then adds the bias in a separate pass over the
    output (and sums its gradient in another), with no communication to do on one rank. Same
    parameters, same arithmetic up to rounding; any other call (TP > 1, sequence parallelism, a
    weight passed in) takes megatron-core's own forward. ``bias_in_gemm`` is a class switch so that
    ``bench/step_ab.py`` can measure what it buys."""

    bias_in_gemm = True

    def forward(self, input_, *args, **kwargs):
        if (not self.bias_in_gemm or args or kwargs or self.config.sequence_parallel
                or self.tp_group.size() > 1):
            return super().forward(input_, *args, **kwargs)
        if self.skip_bias_add:
            return F.linear(input_, self.weight), self.bias
        return F.linear(input_, self.weight, self.bias), None


class _ColumnParallelLinear(_BiasInGemmOnOneRank, ColumnParallelLinear):
    """megatron-core's column-parallel linear (see :class:`_BiasInGemmOnOneRank`)."""


def column_parallel(in_features: int, out_features: int, precision: str, bias: bool = True,
                    skip_bias_add: bool = False) -> ColumnParallelLinear:
    """Linear split by output features; the output stays split (no gather)."""
    layer = _ColumnParallelLinear(in_features, out_features, config=megatron_config(precision),
                                  init_method=torch.nn.init.zeros_, bias=bias, gather_output=False,
                                  skip_bias_add=skip_bias_add)
    _mark(layer.weight, 0)
    return layer


class _RowParallelLinear(_BiasInGemmOnOneRank, RowParallelLinear):
    """megatron-core's row-parallel linear (see :class:`_BiasInGemmOnOneRank`), handing its own TP
    group to the GEMM. Its ``forward`` passes ``tp_group=None`` there, so each call looks the
    default group up and warns on rank 0: a ``warnings.warn`` that breaks a compiled layer's graph
    (``train.compile``)."""

    def _forward_impl(self, input, weight, *args, **kwargs):
        kwargs["tp_group"] = self.tp_group
        return super()._forward_impl(input, weight, *args, **kwargs)


def row_parallel(in_features: int, out_features: int, precision: str, bias: bool = True
                 ) -> RowParallelLinear:
    """Linear split by input features; partial outputs are all-reduced (bias added once, after)."""
    layer = _RowParallelLinear(in_features, out_features, config=megatron_config(precision),
                               init_method=torch.nn.init.zeros_, bias=bias, input_is_parallel=True,
                               skip_bias_add=False)
    _mark(layer.weight, 1)
    return layer


class _OneGradientForTwoUses(torch.autograd.Function):
    """``table -> (table for the lookup, table for the output layer)``, two aliases of it. Backward
    adds the lookup's sparse gradient (the looked-up rows only) into the output layer's dense one in
    place: one [V, h] gradient instead of three (the lookup's zeros + rows, the GEMM's, their sum)."""

    @staticmethod
    def forward(ctx, table):
        return table.view_as(table), table.view_as(table)

    @staticmethod
    def backward(ctx, lookup_grad, output_grad):
        if output_grad is None:  # no output layer used this forward's handle
            return None if lookup_grad is None else lookup_grad.to_dense()
        if lookup_grad is None:
            return output_grad
        # The output layer's GEMM made ``output_grad`` for this node alone: add into it.
        return (output_grad.add_(lookup_grad) if output_grad.is_contiguous()
                else output_grad + lookup_grad)


class _TiedTableOnOneRank(VocabParallelEmbedding):
    """megatron-core's vocabulary-parallel embedding; at tensor-parallel size 1, while training, the
    lookup and the output layer that reuses the table (``output_table()``) share one gradient (see
    :class:`_OneGradientForTwoUses`): at GPT-2 small that saves a [V, h] zero fill and a [V, h] sum a
    step (~55 ms on a 2-core CPU). Any other case (TP > 1, no gradient, ZeRO-3's partitioned
    parameters) takes megatron-core's forward and ``output_table()`` is the weight itself.
    ``one_gradient`` is a class switch so that ``bench/step_ab.py`` can measure what it buys."""

    one_gradient = True
    _output_table = None

    def forward(self, input_):
        self._output_table = None
        if (not self.one_gradient or not torch.is_grad_enabled() or not self.weight.requires_grad
                or self.tp_group.size() > 1 or self.reduce_scatter_embeddings
                or hasattr(self.weight, "ds_id")):
            return super().forward(input_)
        lookup, self._output_table = _OneGradientForTwoUses.apply(self.weight)
        return F.embedding(input_, lookup, sparse=True)

    def output_table(self) -> torch.Tensor:
        """The table for a tied output layer: the handle the last lookup made (handed out once:
        a second output layer in the same step takes the weight itself), else the weight."""
        table, self._output_table = self._output_table, None
        return self.weight if table is None else table


def vocab_parallel_embedding(padded_vocab: int, size: int, precision: str) -> VocabParallelEmbedding:
    """Embedding split by vocabulary rows; its rows beyond the true vocabulary are padding."""
    layer = _TiedTableOnOneRank(padded_vocab, size, init_method=torch.nn.init.zeros_,
                                config=megatron_config(precision))
    _mark(layer.weight, 0)
    layer.weight.vocab_padded = True  # see models.registry.count_parameters
    return layer
