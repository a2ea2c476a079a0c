"""Knowledge distillation (DistilBERT, Sanh et al. 2019): the student's loss against a frozen teacher,

    loss = alpha_ce * KL(teacher || student, both at temperature T) * T^2
         + alpha_mlm * MLM + alpha_cos * (1 - cos(student hidden, teacher hidden)),

over vocab-parallel logits."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from megatron.core import parallel_state as ps
from megatron.core import tensor_parallel

from plmscale.config.schema import ObjectiveConfig
from plmscale.models.common import vocab_parallel_loss_and_accuracy
from plmscale.objectives.masking import IGNORE_INDEX


def _logsumexp_over_ranks(local: torch.Tensor) -> torch.Tensor:
    """log(sum_ranks exp(local)) of per-row logsumexps [n] of each rank's vocabulary slice; the
    backward sends each rank its own share (megatron's reduce: identity backward)."""
    with torch.no_grad():
        top = local.detach().clone()
        dist.all_reduce(top, op=dist.ReduceOp.MAX, group=ps.get_tensor_model_parallel_group())
    shares = torch.exp(local - top)
    # megatron's reduce all-reduces its input in place, and exp's backward reads its output.
    total = tensor_parallel.reduce_from_tensor_model_parallel_region(shares.clone())
    return torch.log(total) + top


def vocab_parallel_kl(student: torch.Tensor, teacher: torch.Tensor, real: int,
                      temperature: float = 1.0) -> torch.Tensor:
    """Mean over rows of KL(softmax(teacher / T) || softmax(student / T)) for vocab-parallel logits
    [n, V/tp]; only this rank's first ``real`` columns count (the rest are vocabulary padding).

    KL = sum_v p_t (log p_t - s_v) + logsumexp(s) since sum_v p_t = 1. Each rank's logsumexp is
    torch's fused one, combined over ranks on [n] vectors, and both sums are dot products, so the
    [n, V] logits are read a few times only (this loss dominated DistilBERT's step). The cross term
    is all-reduced as a whole, so the replicated loss back-propagates (p_s - p_t) / T into each
    rank's slice.
    """
    scale = 1.0 / temperature
    student = student[:, :real].float()
    student = student * scale if scale != 1.0 else student
    group = ps.get_tensor_model_parallel_group()
    with torch.no_grad():
        log_p_t = teacher[:, :real].float() * scale
        log_p_t -= _logsumexp_over_ranks(torch.logsumexp(log_p_t, -1))[:, None]
        p_t = log_p_t.exp()
        entropy_term = torch.linalg.vecdot(p_t, log_p_t)
        dist.all_reduce(entropy_term, group=group)
    cross = tensor_parallel.reduce_from_tensor_model_parallel_region(
        torch.linalg.vecdot(p_t, student))
    log_z = _logsumexp_over_ranks(torch.logsumexp(student, -1))
    return (entropy_term - cross + log_z).mean()


def distillation_losses(logits, hidden, t_logits, t_hidden, labels, real: int,
                        o: ObjectiveConfig) -> dict:
    """The three terms and their weighted sum, over rows = real tokens: student vocab-parallel
    ``logits`` (``real`` columns, then padding) and ``hidden`` states against the teacher's; MLM
    where ``labels`` != -100."""
    t = o.distillation_temperature
    distill_loss = vocab_parallel_kl(logits, t_logits, real, t) * t * t
    cosine_loss = (1.0 - F.cosine_similarity(hidden.float(), t_hidden.float(), dim=-1)).mean()
    selected = labels != IGNORE_INDEX
    # Indexing copies: megatron's cross entropy may edit its input, not ``logits``.
    mlm_loss, mlm_accuracy = vocab_parallel_loss_and_accuracy(logits[selected], labels[selected])
    loss = (o.distillation_alpha_ce * distill_loss + o.distillation_alpha_mlm * mlm_loss
            + o.distillation_alpha_cos * cosine_loss)
    return {"loss": loss, "distill_loss": distill_loss, "mlm_loss": mlm_loss,
            "mlm_accuracy": mlm_accuracy, "cosine_loss": cosine_loss}
