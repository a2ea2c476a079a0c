"""Two memory-pass savings of the tied vocabulary table on one TP rank, each against the plain path:

- the lookup and the output layer share one gradient (``_TiedTableOnOneRank``, switched on the
  class): same loss and every gradient as autograd's sum of two dense ones, for a tied family (GPT,
  BERT), an untied one (Llama: the lookup alone) and an encoder-decoder with two lookups (T5);
- the padding columns' -inf written in place (``_PaddingColumnsToMinusInf``): same logits and
  gradients as ``masked_fill``, for a consumer that leaves their gradient zero (cross entropy) and
  one that does not."""

import pytest
import torch
from closeness import assert_close

from plmscale.config import load_config
from plmscale.models.common import heads
from plmscale.models.common import megatron as layers
from plmscale.parallel import init_model_parallel
from plmscale.training.engine import build_initialised_model

pytestmark = pytest.mark.usefixtures("single_rank")

B, S = 3, 16


def _model_and_batch(preset: str):
    """A tiny model of ``preset`` (vocabulary 1000, padded to 1024: the heads carry padding
    columns) and a batch for its objective, every label real."""
    cfg = load_config(None, [f"model.preset={preset}", "model.vocab_size=1000",
                             "model.hidden_dropout=0", "model.attention_dropout=0"])
    init_model_parallel(cfg)
    model = build_initialised_model(cfg)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 1000, (B, S + 1), generator=g)
    if cfg.model.family in ("gpt", "llama"):
        return model, {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
    ones = torch.ones(B, S, dtype=torch.long)
    if cfg.model.family == "t5":
        return model, {"input_ids": ids[:, :S], "attention_mask": ones,
                       "decoder_input_ids": ids[:, :8], "labels": ids[:, 1:9],
                       "decoder_attention_mask": ones[:, :8]}
    labels = torch.full((B, S), -100)
    labels[:, 1::3] = ids[:, 1:S:3]
    return model, {"input_ids": ids[:, :S], "attention_mask": ones, "mlm_labels": labels,
                   "token_type_ids": torch.zeros_like(ones),
                   "next_sentence_label": torch.tensor([0, 1, 0])}


def _loss_and_grads(model, batch, one_gradient: bool):
    layers._TiedTableOnOneRank.one_gradient = one_gradient
    try:
        model.zero_grad(set_to_none=True)
        loss = model(batch)["loss"]
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads
    finally:
        layers._TiedTableOnOneRank.one_gradient = True


@pytest.mark.parametrize("preset", ["gpt-tiny", "bert-tiny", "llama-tiny", "t5-tiny"])
def test_one_gradient_equals_autograds_sum(preset):
    model, batch = _model_and_batch(preset)
    loss, grads = _loss_and_grads(model, batch, True)
    ref_loss, ref_grads = _loss_and_grads(model, batch, False)
    assert_close(loss, ref_loss)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        assert grad.layout == torch.strided, name  # the optimizer gets a dense gradient
        assert_close(grad, ref_grads[name], name)
    table = next(n for n in grads if n.endswith(("word_embeddings.weight", "shared.weight")))
    assert grads[table].abs().sum() > 0


def _padded_logits(in_place: bool, consumer: str):
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(6, 8, generator=g, requires_grad=True)
    table = torch.randn(12, 8, generator=g, requires_grad=True)
    labels = torch.randint(0, 9, (6,), generator=g)
    if in_place:
        logits = heads.tied_logits(hidden, table, None, 9)
    else:
        logits = torch.nn.functional.linear(hidden, table).masked_fill(
            torch.arange(12) >= 9, float("-inf"))
    if consumer == "cross-entropy":
        torch.nn.functional.cross_entropy(logits, labels).backward()
    else:  # a gradient on every column, padding included (expanded: not contiguous)
        logits.backward(torch.linspace(-1, 1, 12).expand(6, 12))
    return [logits.detach(), hidden.grad, table.grad]


@pytest.mark.parametrize("consumer", ["cross-entropy", "gradient-on-padding"])
def test_padding_columns_in_place_equal_masked_fill(consumer):
    init_model_parallel(load_config(None, ["model.preset=gpt-tiny"]))
    ours, reference = _padded_logits(True, consumer), _padded_logits(False, consumer)
    assert torch.isinf(ours[0][:, 9:]).all() and torch.isfinite(ours[0][:, :9]).all()
    assert_close(ours[0][:, :9], reference[0][:, :9])
    for a, b in zip(ours[1:], reference[1:]):
        assert_close(a, b)
    assert not ours[2][9:].any()  # the padding rows of the table get no gradient
