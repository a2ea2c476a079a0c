"""Replaced-token detection (ELECTRA, Clark et al. 2020): sampling the generator's replacements,
corrupting the input with them, and the discriminator's per-token loss.

Sampling is not differentiated: token ids are drawn under ``no_grad`` from the detached, TP-gathered
logits. The noise of each sample comes from a seed the data carries (a function of the sample index),
over the true (unpadded) vocabulary, so every TP rank, TP/PP/DP layout and resumed run draws the
same tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plmscale.models.common import gather_vocab_logits
from plmscale.objectives.masking import IGNORE_INDEX


@torch.no_grad()
def sample_from_logits(logits: torch.Tensor, true_vocab_size: int,
                       sample_seeds: torch.Tensor | None = None,
                       rows_per_sample: torch.Tensor | None = None) -> torch.Tensor:
    """One token id per row of vocab-parallel ``logits`` [n, V/tp], drawn from their softmax.

    Gumbel-max over the gathered, unpadded logits, so the noise has the same shape for any TP size.
    With ``sample_seeds`` [b] (from the data: a pure function of the sample index), sample i's rows
    (``rows_per_sample[i]`` of them, in order) get noise from a generator seeded by its seed: the
    same draw on every rank, layout (TP, PP, DP) and resume. Without, the noise comes from the
    default stream, which ``plmscale.parallel.random`` keeps in step across a TP group.
    """
    full = gather_vocab_logits(logits.detach(), true_vocab_size).float()
    if sample_seeds is None:
        uniform = torch.rand(full.shape, device=full.device)
    else:
        pieces = []
        for seed, rows in zip(sample_seeds.tolist(), rows_per_sample.tolist()):
            generator = torch.Generator(device=full.device).manual_seed(int(seed))
            pieces.append(torch.rand((rows, full.shape[1]), generator=generator,
                                     device=full.device))
        uniform = torch.cat(pieces) if pieces else full.new_empty(full.shape)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(torch.float32).tiny)))
    return (full + gumbel).argmax(-1)


@torch.no_grad()
def corrupt(input_ids: torch.Tensor, labels: torch.Tensor, sampled: torch.Tensor):
    """(discriminator input, RTD targets): masked positions hold the generator's samples; a sample
    equal to the original token counts as original (as in the paper)."""
    selected = labels != IGNORE_INDEX
    original = torch.where(selected, labels, input_ids)
    corrupted = input_ids.clone()
    corrupted[selected] = sampled
    return corrupted, (corrupted != original).float()


def rtd_loss_and_accuracy(rtd_logits: torch.Tensor, replaced: torch.Tensor,
                          attention: torch.Tensor | None):
    """Binary cross entropy of the per-token logits over the real (non-padding) tokens."""
    active = (attention.bool() if attention is not None
              else torch.ones_like(replaced, dtype=torch.bool))
    logits, targets = rtd_logits.float()[active], replaced[active]
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    return loss, ((logits > 0).float() == targets).float().mean()
