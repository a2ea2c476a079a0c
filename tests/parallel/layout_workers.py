"""Rank function of the family x layout matrix (module-level so spawned ranks can import it)."""

from __future__ import annotations

from pathlib import Path

from plmscale.config import load_config
from plmscale.parallel import init_distributed, init_model_parallel, seed_all

REPO = Path(__file__).resolve().parents[2]

# Tiny, deterministic, short: every variant trains 2 steps of 2 micro-batches from the same weights.
COMMON = ["model.hidden_dropout=0", "model.attention_dropout=0", "model.max_position_embeddings=64",
          "data.seq_length=64", "data.num_workers=0", "train.micro_batch_size=4",
          "train.gradient_accumulation_steps=2", "train.train_steps=2", "train.warmup_steps=0",
          "train.lr=1e-3", "train.progress_bar=false", "train.save_dir=null",
          "train.tensorboard_dir=null", "parallel.zero_stage=1",
          "parallel.tensor_model_parallel_size=1", "parallel.pipeline_model_parallel_size=1"]

# DistilBERT's teacher: a BERT of twice the student's depth, saved by the single-rank group.
TEACHER = ["model.preset=bert-tiny", "model.num_layers=4", "model.vocab_size=8000",
           "objective.next_sentence_prediction=false", "train.train_steps=1"]


def train_variants(shards: str, teacher_dir: str, variants: dict[str, tuple[str, list[str]]],
                   layout: list[str]) -> dict[str, list[dict]]:
    """Train every variant (name -> (config file in configs/, overrides)) in this layout, one after
    the other in the same process group; returns each one's per-step reported metrics."""
    from plmscale.training.loop import train
    init_distributed()
    common = COMMON + [f"data.path={shards}"]
    if not Path(teacher_dir, "latest").exists():
        cfg = load_config(None, common + TEACHER + [f"train.save_dir={teacher_dir}"])
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)
        train(cfg)
    results = {}
    for name, (config, overrides) in variants.items():
        cfg = load_config(REPO / "configs" / config,
                          common + [o.replace("{teacher}", teacher_dir) for o in overrides] + layout)
        init_model_parallel(cfg)
        seed_all(cfg.train.seed)
        results[name] = train(cfg)
    return results
