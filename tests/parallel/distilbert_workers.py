"""Rank functions for the DistilBERT parallel tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

from pathlib import Path

import torch
from closeness import Closeness, closeness
from workers_common import (forward_backward, held_out_batch, load_exported,
                            max_abs_diff, restored_from_checkpoint, tp2_vs_tp1)

from plmscale.config import load_config
from plmscale.export import full_tensors
from plmscale.parallel import init_distributed, init_model_parallel, initialize_parameters, seed_all
from plmscale.training.engine import build_initialised_model

SIZE = ["model.vocab_size=1100", "model.max_position_embeddings=64", "model.hidden_dropout=0",
        "model.attention_dropout=0", "model.num_attention_heads=4"]
TEACHER = ["model.preset=bert-tiny", "model.num_layers=4"]
STUDENT = ["model.preset=distilbert-tiny"]

TRAIN = ["model.vocab_size=8000", "model.max_position_embeddings=64", "data.seq_length=64",
         "data.num_workers=0", "objective.next_sentence_prediction=false",
         "train.micro_batch_size=16", "train.lr=1e-3", "train.warmup_steps=3",
         "train.progress_bar=false"]


def tensor_parallel_vs_single() -> dict:
    """Student (initialised from an in-memory teacher) at TP=2 against TP=1: losses, gathered
    gradients, and HF ``DistilBertForMaskedLM`` logits after export."""
    from bert_workers import fixed_batch

    from plmscale.families.bert.model import BertForPreTraining
    from plmscale.families.distilbert.model import DistilBertForMaskedLM
    init_distributed()
    cfg = load_config(None, STUDENT + SIZE)
    teacher_cfg = load_config(None, TEACHER + SIZE)
    batch = fixed_batch(cfg.model.vocab_size)
    batch = {k: batch[k] for k in ("input_ids", "attention_mask", "mlm_labels")}
    runs = {}
    for tp in (2, 1):
        cfg.parallel.tensor_model_parallel_size = tp
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)
        teacher = BertForPreTraining(teacher_cfg.model)
        initialize_parameters(teacher, 99, 0.2, cfg.model.vocab_size)  # a peaked teacher
        model = DistilBertForMaskedLM(cfg.model, objective=cfg.objective, teacher=teacher)
        initialize_parameters(model, cfg.train.seed, 0.02, cfg.model.vocab_size)
        model.initialize_from_teacher()
        runs[tp] = forward_backward(model, cfg, batch, lambda model: model.logits(
            batch["input_ids"], batch["attention_mask"]))
    a, b = runs[2], runs[1]
    return {
        **tp2_vs_tp1(a, b),
        "out": b["out"],
        "hf_logit_diff": hf_logit_diff(cfg, a["params"], a["logits"], batch),
    }


def hf_logit_diff(cfg, params: dict, logits: torch.Tensor, batch: dict) -> Closeness:
    """Closeness of ours to HF DistilBertForMaskedLM after exporting the gathered weights."""
    from transformers import DistilBertForMaskedLM

    from plmscale.families.distilbert.hf import hf_config, to_hf_state_dict
    hf = DistilBertForMaskedLM(hf_config(cfg.model)).eval()
    load_exported(hf, to_hf_state_dict(params, cfg.model))
    with torch.no_grad():
        ref = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return closeness(logits.float(), ref, "HF logits")


def distill_from_checkpoint(shards: str, directory: str, teacher_steps: int, student_steps: int,
                            scratch_steps: int) -> dict:
    """A BERT teacher trained and saved with TP=1 (DP=2); a student distilled from that checkpoint
    with TP=2: its initial weights, its losses, and HF logits from its own saved checkpoint; then
    the same student from random initialisation for ``scratch_steps``."""
    import time

    from plmscale.families.distilbert.model import load_teacher
    from plmscale.training.loop import train
    init_distributed()
    teacher_dir, student_dir = f"{directory}/teacher", f"{directory}/student"
    cfg = load_config(None, TEACHER + TRAIN + [f"data.path={shards}",
                                               f"train.train_steps={teacher_steps}",
                                               f"train.save_dir={teacher_dir}"])
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    teacher_history = train(cfg)

    cfg = load_config(None, STUDENT + TRAIN + [
        f"data.path={shards}", "parallel.tensor_model_parallel_size=2",
        f"objective.distillation_teacher_path={teacher_dir}", f"train.train_steps={student_steps}",
        f"train.save_dir={student_dir}"])
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    # Re-sliced for TP=2 from the TP=1 files: equal to what was saved.
    saved_file = sorted(Path(teacher_dir).glob("*/mp_rank_00_model_states.pt"))[0]
    saved = torch.load(saved_file, map_location="cpu", weights_only=False)["module"]
    teacher = full_tensors(load_teacher(teacher_dir), cfg.model.vocab_size)
    teacher_diff = max((teacher[n] - saved[n][:teacher[n].shape[0]].float()).abs().max().item()
                       for n in teacher)
    model = build_initialised_model(cfg)  # the family's initialize hook copies the teacher layers
    student = full_tensors(model, cfg.model.vocab_size)
    init_diff = max((student[n] - teacher[model.teacher_name(n)]).abs().max().item() for n in student)
    start = time.time()
    history = train(cfg, model)
    seconds = time.time() - start

    cfg.train.save_dir = None
    restored = restored_from_checkpoint(cfg, student_dir)
    batch = held_out_batch(cfg, ("input_ids", "attention_mask"))
    params = full_tensors(restored, cfg.model.vocab_size)
    trained = full_tensors(model, cfg.model.vocab_size)
    logits = restored.logits(batch["input_ids"], batch["attention_mask"])

    # The same student from plmscale's random initialisation instead of the teacher's layers.
    cfg.objective.distillation_init_from_teacher = False
    cfg.train.train_steps = scratch_steps
    seed_all(cfg.train.seed)
    scratch = build_initialised_model(cfg)
    scratch_init_diff = max((t - teacher[scratch.teacher_name(n)]).abs().max().item()
                            for n, t in full_tensors(scratch, cfg.model.vocab_size).items())
    scratch_history = train(cfg, scratch)
    return {"teacher_losses": [h["loss"] for h in teacher_history], "teacher_diff": teacher_diff,
            "init_diff": init_diff, "history": history, "seconds": seconds,
            "scratch_init_diff": scratch_init_diff, "scratch_history": scratch_history,
            "hf_logit_diff": hf_logit_diff(cfg, params, logits, batch),
            "restored_diff": max_abs_diff(params, trained)}
