"""Rank functions for the masking tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

import numpy as np
import torch
from closeness import closeness
from workers_common import undetected_perturbations

from plmscale.config import DataConfig, ObjectiveConfig, load_config
from plmscale.data import Corpus
from plmscale.families.bert.samples import BertSamples
from plmscale.export import full_tensors
from plmscale.models.common import vocab_parallel_loss_and_accuracy
from plmscale.objectives.schedule import global_batch_size
from plmscale.objectives.span_boundary import SpanBoundaryHead, span_boundary_loss
from plmscale.parallel import init_distributed, init_model_parallel, seed_all
from plmscale.training.engine import build_initialised_model

TINY = ["model.preset=bert-tiny", "model.num_attention_heads=4", "model.vocab_size=8000",
        "model.max_position_embeddings=64", "model.hidden_dropout=0", "model.attention_dropout=0",
        "train.micro_batch_size=3", "train.gradient_accumulation_steps=2"]


def span_boundary_on_bert(shards: str) -> dict:
    """SpanBERT on the real BERT: span-masked samples from the demo shards, MLM + SBO loss with the
    SBO head projected through BERT's tied, vocab-parallel output layer; TP=2 against TP=1. Also
    the global batch size a schedule uses, read from the data-parallel group."""
    init_distributed()
    cfg = load_config(None, TINY)
    corpus = Corpus(shards)
    samples = BertSamples(corpus, corpus.tokens, DataConfig(seq_length=64),
                          ObjectiveConfig(masking="span", span_boundary_objective=True), seed=4)
    batch = {k: torch.from_numpy(np.stack([samples(i)[k] for i in range(6)]))
             for k in samples(0)}
    runs, batch_sizes = {}, {}
    for tp in (2, 1):
        cfg.parallel.tensor_model_parallel_size = tp
        init_model_parallel(cfg)
        batch_sizes[tp] = global_batch_size(cfg)
        seed_all(cfg.train.seed)
        model = build_initialised_model(cfg)
        torch.manual_seed(11)  # the head is replicated: the same weights on every rank and layout
        head = SpanBoundaryHead(cfg.model.hidden_size)
        out = model(batch)
        # The encoder's output at every position: without mlm_labels the last layer is not sparse
        # (this model's own losses read no span boundaries).
        hidden = model.run({k: v for k, v in batch.items() if k != "mlm_labels"},
                           model.pieces[:-1])["hidden"]
        weight = model.bert.embeddings.word_embeddings.weight
        sbo_loss, sbo_accuracy = span_boundary_loss(
            head, hidden, batch["sbo_left"], batch["sbo_right"], batch["sbo_position"],
            batch["mlm_labels"], project=lambda y: model.lm_head.logits(y, weight),
            loss_fn=vocab_parallel_loss_and_accuracy)
        (out["mlm_loss"] + sbo_loss).backward()
        grads = full_tensors(model, cfg.model.vocab_size, grads=True)
        grads.update({f"sbo.{n}": p.grad.clone() for n, p in head.named_parameters()})
        runs[tp] = {"sbo_loss": float(sbo_loss), "sbo_accuracy": float(sbo_accuracy),
                    "mlm_loss": float(out["mlm_loss"]), "grads": grads}
    a, b = runs[2], runs[1]
    return {
        "sbo_loss": b["sbo_loss"],
        "losses": closeness({k: a[k] for k in ("sbo_loss", "mlm_loss")},
                            {k: b[k] for k in ("sbo_loss", "mlm_loss")}, "losses"),
        "accuracy_diff": abs(a["sbo_accuracy"] - b["sbo_accuracy"]),
        "grads": closeness(a["grads"], b["grads"], "grads"),
        "undetected_perturbations": undetected_perturbations(a["grads"], b["grads"]),
        "head_grad_norm": sum(b["grads"][n].norm() ** 2 for n in b["grads"]
                              if n.startswith("sbo.")) ** 0.5,
        "span_tokens": int((batch["sbo_position"] >= 0).sum()),
        "global_batch_sizes": batch_sizes,
    }
