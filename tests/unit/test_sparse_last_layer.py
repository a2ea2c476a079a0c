"""The sparse last layer (``plmscale.families.bert.model.query_rows``): an MLM model's last encoder
layer computes only the positions its losses read (masked tokens, the pooled [CLS], SpanBERT's span
boundaries). Its loss, metrics and every gradient equal the full layer's, on a padded batch, for
each family and objective that uses it; and it does compute less (not at all with experts in
the last layer)."""

import pytest
import torch
from closeness import assert_within, closeness
from torch.utils.flop_counter import FlopCounterMode

from plmscale.config import load_config
from plmscale.families.bert import model as bert_model
from plmscale.objectives import IGNORE_INDEX
from plmscale.parallel import init_model_parallel
from plmscale.training.engine import build_initialised_model

pytestmark = pytest.mark.usefixtures("single_rank")

B, S = 4, 32
CASES = {  # name -> preset, overrides
    "bert-nsp": ("bert-tiny", []),
    "bert-no-nsp": ("bert-tiny", ["objective.next_sentence_prediction=false"]),
    "spanbert-sbo": ("bert-tiny", ["objective.next_sentence_prediction=false",
                                   "objective.span_boundary_objective=true"]),
    "roberta": ("roberta-tiny", []),
    "albert-sop": ("albert-tiny", ["objective.sentence_order_prediction=true"]),
    "unilm": ("unilm-tiny", []),  # per-sample [b, 1, s, s] masks: their query rows are taken too
    # Experts in the last layer: routing and its balance loss see every token, so it stays full.
    "bert-moe": ("bert-tiny", ["model.num_experts=4", "model.moe_top_k=2",
                               "model.moe_dropless=true"]),
}


def _batch(family: str, vocab: int) -> dict:
    """Random tokens; samples 1 and 2 padded; ~15% labelled, never the [CLS] nor padding."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (B, S), generator=g)
    attention = (torch.arange(S) < torch.tensor([S, S - 5, S - 11, S])[:, None]).long()
    chosen = (torch.rand(B, S, generator=g) < 0.15) & attention.bool()
    chosen[:, 0] = False
    batch = {"input_ids": ids, "attention_mask": attention}
    pair = torch.randint(0, 2, (B,), generator=g)
    if family == "bert":
        batch.update(token_type_ids=(torch.arange(S) >= S // 2).long().expand(B, S).contiguous(),
                     next_sentence_label=pair)
        # SpanBERT: spans 3..6 and 10..12 of every sample (their tokens labelled)
        left, right, position = (torch.full((B, S), -1) for _ in range(3))
        for start, end in ((3, 6), (10, 12)):
            chosen[:, start:end + 1] = True
            left[:, start:end + 1], right[:, start:end + 1] = start - 1, end + 1
            position[:, start:end + 1] = torch.arange(end + 1 - start)
        batch.update(sbo_left=left, sbo_right=right, sbo_position=position)
    if family == "albert":
        batch.update(token_type_ids=torch.zeros_like(ids), sentence_order_label=pair)
    if family == "unilm":  # bidirectional, left-to-right, right-to-left, seq2seq (source 4, target 5)
        types = torch.tensor([0, 2, 3, 4])[:, None].expand(B, S).clone()
        types[3, S // 2:] = 5
        batch.update(token_type_ids=types,
                     next_sentence_label=torch.tensor([pair[0], IGNORE_INDEX, IGNORE_INDEX,
                                                       IGNORE_INDEX]))
    batch["mlm_labels"] = torch.where(chosen, ids, IGNORE_INDEX)
    return batch


def _step(model, batch) -> tuple[dict, float]:
    """(metrics and gradients, counted FLOPs) of one forward and backward."""
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        out = model(batch)
        out["loss"].backward()
    values = {k: v.detach() for k, v in out.items()}
    values.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    return values, counter.get_total_flops()


@pytest.mark.parametrize("case", list(CASES))
def test_sparse_last_layer_equals_the_full_layer(case, monkeypatch):
    preset, overrides = CASES[case]
    cfg = load_config(None, [f"model.preset={preset}", "model.vocab_size=1000",
                             "model.hidden_dropout=0", "model.attention_dropout=0", *overrides])
    init_model_parallel(cfg)
    model = build_initialised_model(cfg)
    batch = _batch(cfg.model.family, cfg.model.vocab_size)
    sparse, sparse_flops = _step(model, batch)
    monkeypatch.setattr(bert_model, "query_rows", lambda read: None)  # the full last layer
    full, full_flops = _step(model, batch)
    assert sparse.keys() == full.keys()
    assert_within(closeness(sparse, full, case))
    if case == "bert-moe":
        assert sparse_flops == full_flops
    else:
        assert sparse_flops < full_flops, case
