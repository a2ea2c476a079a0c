"""Output heads over vocab-parallel embeddings, and the vocab-parallel masked-LM loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core import tensor_parallel
from torch import nn

from plmscale.models.common.megatron import tp_world
from plmscale.objectives.masking import IGNORE_INDEX


class TiedVocabParallelLogits(nn.Module):
    """Logits over this rank's vocabulary slice from the (tied) word-embedding slice plus a bias.

    Columns that exist only because of TP padding get -inf so they never take probability mass: the
    loss is then the same for any padding (hence any TP size) and equals the unpadded HF model's.
    """

    def __init__(self, padded_vocab_size: int, true_vocab_size: int, bias: bool = True):
        super().__init__()
        rank, size = tp_world()
        per_rank = padded_vocab_size // size
        self.bias = nn.Parameter(torch.zeros(per_rank)) if bias else None
        if self.bias is not None:
            tensor_parallel.set_tensor_model_parallel_attributes(self.bias, True, 0, 1)
            self.bias.vocab_padded = True
        self.real_columns = real_columns(per_rank, true_vocab_size)

    def forward(self, hidden: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        return tied_logits(hidden, embedding_weight, self.bias, self.real_columns)


def real_columns(per_rank: int, true_vocab_size: int) -> int:
    """How many of this TP rank's ``per_rank`` vocabulary columns are real; the rest (always the
    last columns of the slice) exist only because the vocabulary is padded to an equal split."""
    return min(max(true_vocab_size - tp_world()[0] * per_rank, 0), per_rank)


def tied_logits(hidden, embedding_weight, bias, real: int) -> torch.Tensor:
    """This rank's vocabulary slice of ``hidden @ embedding_weight.T + bias``; the padding columns
    (from column ``real`` on) are -inf."""
    # Identity forward, all-reduce backward: each rank's logits slice contributes to the grad.
    hidden = tensor_parallel.copy_to_tensor_model_parallel_region(hidden)
    logits = F.linear(hidden, embedding_weight, bias)
    if real < logits.shape[-1]:
        logits = _PaddingColumnsToMinusInf.apply(logits, real)
    return logits


class _PaddingColumnsToMinusInf(torch.autograd.Function):
    """``logits[..., real:] = -inf`` in place, on the fresh output of the GEMM; backward zeroes the
    gradient of those columns. Cross entropy already leaves them exactly zero (softmax of -inf is 0),
    so the gradient then passes on untouched: no copy of the [tokens, V] logits either way, which
    ``masked_fill`` made twice (~45 ms a step at GPT-2 small on a 2-core CPU)."""

    @staticmethod
    def forward(ctx, logits, real: int):
        ctx.real = real
        logits[..., real:] = float("-inf")
        ctx.mark_dirty(logits)
        return logits

    @staticmethod
    def backward(ctx, grad):
        # NaN counts as nonzero. (On a GPU this check is one host sync per step.)
        if grad[..., ctx.real:].count_nonzero() == 0:
            return grad, None
        grad = grad.clone()
        grad[..., ctx.real:] = 0
        return grad, None


class GatherFromTensorParallel(torch.autograd.Function):
    """[..., n/tp] slices -> [..., n] on every TP rank; backward keeps this rank's slice. (A tensor
    that crosses pipeline stages must be the same on every TP rank.)"""

    @staticmethod
    def forward(ctx, local):
        ctx.rank, ctx.width = tp_world()[0], local.shape[-1]
        return gather_last_dim(local).clone()

    @staticmethod
    def backward(ctx, grad):
        return grad[..., ctx.rank * ctx.width:(ctx.rank + 1) * ctx.width].contiguous()


class ScatterToTensorParallel(torch.autograd.Function):
    """[..., n] -> this rank's [..., n/tp]; backward all-gathers (equal gradients on every rank)."""

    @staticmethod
    def forward(ctx, full):
        rank, size = tp_world()
        width = full.shape[-1] // size
        return full[..., rank * width:(rank + 1) * width].contiguous()

    @staticmethod
    def backward(ctx, grad):
        return gather_last_dim(grad.contiguous())


def vocab_parallel_loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor):
    """Mean cross entropy and accuracy of vocab-parallel ``logits`` [n, V/tp] against ``labels`` [n]."""
    with torch.no_grad():  # before the loss: megatron's cross entropy edits its input in place
        full = gather_last_dim(logits.detach())
        accuracy = (full.argmax(-1) == labels).float().mean()
    losses = tensor_parallel.vocab_parallel_cross_entropy(logits.float().unsqueeze(0),
                                                          labels.unsqueeze(0)).squeeze(0)
    return losses.mean(), accuracy


def labelled_metrics(name: str, project, hidden: torch.Tensor, labels: torch.Tensor) -> dict:
    """``<name>_loss`` and ``<name>_accuracy`` (the loss also as ``loss``) of the vocab-parallel
    logits ``project(hidden[selected])`` against ``labels`` [b, s] (IGNORE_INDEX = not predicted).
    Only the labelled positions go through the vocabulary projection, the most expensive matmul of
    a small model's step."""
    selected = labels != IGNORE_INDEX
    loss, accuracy = vocab_parallel_loss_and_accuracy(project(hidden[selected]), labels[selected])
    return {f"{name}_loss": loss, f"{name}_accuracy": accuracy, "loss": loss}


def gather_vocab_logits(logits: torch.Tensor, true_vocab_size: int) -> torch.Tensor:
    """Full-vocabulary logits without padding columns (for export checks and generation)."""
    return gather_last_dim(logits)[..., :true_vocab_size]


def gather_last_dim(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate the TP ranks' slices along the last dimension, without autograd.

    (megatron-core's gather allocates on the CUDA device, so it cannot serve CPU ranks.)
    """
    group = ps.get_tensor_model_parallel_group()
    size = ps.get_tensor_model_parallel_world_size()
    if size == 1:
        return tensor
    pieces = [torch.empty_like(tensor) for _ in range(size)]
    dist.all_gather(pieces, tensor.contiguous(), group=group)
    return torch.cat(pieces, dim=-1)
