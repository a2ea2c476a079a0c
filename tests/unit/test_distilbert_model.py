"""DistilBERT on one rank: parameter counts vs HF (meta device), student initialised from every other
teacher layer, the distillation loss terms behave (KL >= 0, zero when student == teacher)."""

import pytest
import torch
from closeness import assert_close
from meta_counts import meta_counts

from plmscale.config import load_config
from plmscale.families.bert.model import BertForPreTraining
from plmscale.families.distilbert.model import DistilBertForMaskedLM
from plmscale.objectives.distillation import vocab_parallel_kl
from plmscale.parallel import init_model_parallel, initialize_parameters, seed_all

SPEC_COUNTS = {"distilbert-base": 66_985_530}

pytestmark = pytest.mark.usefixtures("single_rank")


@pytest.mark.parametrize("preset", ["distilbert-tiny", "distilbert-base"])
def test_count_matches_hf(preset):
    counts = meta_counts(preset)  # HF DistilBertForMaskedLM
    assert counts.ours == counts.hf == SPEC_COUNTS.get(preset, counts.hf)


def _teacher_and_student():
    cfg = load_config(None, ["model.preset=distilbert-tiny", "model.vocab_size=300",
                             "model.max_position_embeddings=32"])
    init_model_parallel(cfg)
    teacher_cfg = load_config(None, ["model.preset=bert-tiny", "model.num_layers=4",
                                     "model.vocab_size=300", "model.max_position_embeddings=32"])
    teacher = BertForPreTraining(teacher_cfg.model)
    initialize_parameters(teacher, 99, 0.02, 300)
    student = DistilBertForMaskedLM(cfg.model, objective=cfg.objective, teacher=teacher)
    initialize_parameters(student, cfg.train.seed, 0.02, 300)
    return cfg, teacher, student


def test_student_starts_from_every_other_teacher_layer():
    cfg, teacher, student = _teacher_and_student()
    before = {n: p.clone() for n, p in student.named_parameters()}
    student.initialize_from_teacher()
    t = dict(teacher.named_parameters())
    for i, j in ((0, 0), (1, 2)):
        for name, p in student.distilbert.layers[i].named_parameters():
            assert torch.equal(p, t[f"bert.layers.{j}.{name}"]), (i, name)
    for name in ("word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight"):
        assert torch.equal(dict(student.named_parameters())["distilbert.embeddings." + name],
                           t["bert.embeddings." + name])
    assert torch.equal(student.lm_head.dense.weight, teacher.lm_head.dense.weight)
    assert not torch.equal(student.distilbert.layers[1].mlp.linear_fc1.weight,
                           teacher.bert.layers[1].mlp.linear_fc1.weight)
    # Every student tensor is its teacher source, and every weight matrix changed from its own draw.
    for name, p in student.named_parameters():
        assert torch.equal(p, t[student.teacher_name(name)]), name
        assert p.dim() < 2 or not torch.equal(p, before[name]), name
    # Nothing of the teacher is a parameter of the student (not trained, saved or counted).
    assert not any(n.startswith("_teacher") for n, _ in student.named_parameters())


def test_kl_matches_torch_and_vanishes_for_identical_logits():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, 11, generator=g), torch.randn(5, 11, generator=g) * 3
    s[:, -2:] = t[:, -2:] = float("-inf")
    s.requires_grad_(True)
    ours = vocab_parallel_kl(s, t, 9, temperature=2.0)
    ref = torch.nn.functional.kl_div(torch.log_softmax(s[:, :-2] / 2, -1),
                                     torch.softmax(t[:, :-2] / 2, -1), reduction="batchmean")
    assert_close(ours, ref, "KL")
    ours.backward()
    expected = (torch.softmax(s[:, :-2] / 2, -1) - torch.softmax(t[:, :-2] / 2, -1)).detach() / 10
    assert_close(s.grad[:, :-2], expected, "KL gradient")
    assert not s.grad[:, -2:].any()
    assert vocab_parallel_kl(t, t, 9).abs().item() < 1e-6


def test_forward_losses():
    cfg, teacher, student = _teacher_and_student()
    student.initialize_from_teacher()
    seed_all(0)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(5, 300, (2, 12), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    attention = torch.ones_like(ids)
    attention[1, 9:] = 0
    out = student({"input_ids": ids, "mlm_labels": labels, "attention_mask": attention})
    assert out["distill_loss"] > 0 and 0 < out["cosine_loss"] < 2 and out["mlm_loss"] > 1
    o = cfg.objective
    assert_close(out["loss"], o.distillation_alpha_ce * out["distill_loss"]
                 + o.distillation_alpha_mlm * out["mlm_loss"]
                 + o.distillation_alpha_cos * out["cosine_loss"], "weighted loss")
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
