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


def vocab_parallel_kl(student: torch.Tensor, teacher: torch.Tensor, padding: torch.Tensor
                      ) -> torch.Tensor:
    """Mean over rows of KL(softmax(teacher) || softmax(student)) for vocab-parallel logits [n, V/tp]
    (already divided by the temperature); ``padding`` marks this rank's padding columns (-inf).

    KL = sum_v p_t (log p_t - s_v) + logsumexp(s) since sum_v p_t = 1. The logsumexp is computed once
    from all-reduced pieces and the cross term is all-reduced as a whole, so the replicated loss
    back-propagates p_s - p_t into each rank's slice (megatron's reduce: identity backward).
    """
    group = ps.get_tensor_model_parallel_group()
    student = student.float()
    with torch.no_grad():
        teacher = teacher.float()
        t_max = teacher.max(-1, keepdim=True).values
        dist.all_reduce(t_max, op=dist.ReduceOp.MAX, group=group)
        t_exp = torch.exp(teacher - t_max)
        t_sum = t_exp.sum(-1, keepdim=True)
        dist.all_reduce(t_sum, group=group)
        p_t = t_exp / t_sum
        log_p_t = teacher - t_max - torch.log(t_sum)
        entropy_term = torch.where(p_t > 0, p_t * log_p_t, torch.zeros_like(p_t)).sum(-1)
        dist.all_reduce(entropy_term, group=group)
        s_max = student.detach().max(-1, keepdim=True).values
        dist.all_reduce(s_max, op=dist.ReduceOp.MAX, group=group)
    s_sum = tensor_parallel.reduce_from_tensor_model_parallel_region(
        torch.exp(student - s_max).sum(-1))
    log_z = torch.log(s_sum) + s_max.squeeze(-1)
    cross = tensor_parallel.reduce_from_tensor_model_parallel_region(
        (p_t * student.masked_fill(padding, 0.0)).sum(-1))
    return (entropy_term - cross + log_z).mean()


def distillation_losses(logits, hidden, t_logits, t_hidden, labels, padding: torch.Tensor,
                        o: ObjectiveConfig) -> dict:
    """The three terms and their weighted sum, over rows = real tokens: student vocab-parallel
    ``logits`` and ``hidden`` states against the teacher's; MLM where ``labels`` != -100."""
    t = o.distillation_temperature
    distill_loss = vocab_parallel_kl(logits / t, t_logits / t, padding) * t * t
    cosine_loss = (1.0 - F.cosine_similarity(hidden.float(), t_hidden.float(), dim=-1)).mean()
    selected = labels != IGNORE_INDEX
    # Indexing copies: megatron's cross entropy may edit its input, not ``logits``.
    mlm_loss, mlm_accuracy = vocab_parallel_loss_and_accuracy(logits[selected], labels[selected])
    loss = (o.distillation_alpha_ce * distill_loss + o.distillation_alpha_mlm * mlm_loss
            + o.distillation_alpha_cos * cosine_loss)
    return {"loss": loss, "distill_loss": distill_loss, "mlm_loss": mlm_loss,
            "mlm_accuracy": mlm_accuracy, "cosine_loss": cosine_loss}
