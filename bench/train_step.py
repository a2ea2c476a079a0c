"""Training-step throughput: plmscale BERT (TP=1, through its DeepSpeed engine, ZeRO-0) against HF
``transformers.BertForPreTraining`` with the same config, batch and optimizer (AdamW), in one run.

    python bench/train_step.py [--layers 4 --hidden 256 --heads 4 --seq 128 --batch 16 --steps 20]

Steps of the two models are interleaved so that machine noise hits both alike; the ratio of median
step times (HF / plmscale, > 1 means plmscale is faster) is what counts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("MASTER_PORT", "29631")

import torch  # noqa: E402


def make_batch(vocab: int, batch: int, seq: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(200, vocab, (batch, seq), generator=g)
    labels = torch.full_like(ids, -100)
    chosen = torch.rand(batch, seq, generator=g) < 0.15
    labels[chosen] = ids[chosen]
    return {"input_ids": ids, "token_type_ids": (torch.arange(seq) >= seq // 2).long().expand(batch, -1),
            "attention_mask": torch.ones_like(ids), "mlm_labels": labels,
            "next_sentence_label": torch.randint(0, 2, (batch,), generator=g)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    from transformers import BertForPreTraining

    from plmscale.config import load_config
    from plmscale.export.bert import hf_config
    from plmscale.parallel import init_distributed, init_model_parallel, seed_all
    from plmscale.training.engine import build_engine

    cfg = load_config(None, [f"model.num_layers={args.layers}", f"model.hidden_size={args.hidden}",
                             f"model.num_attention_heads={args.heads}",
                             f"model.ffn_hidden_size={4 * args.hidden}", f"model.vocab_size={args.vocab}",
                             "model.hidden_dropout=0", "model.attention_dropout=0",
                             f"train.micro_batch_size={args.batch}", "parallel.zero_stage=0",
                             "train.grad_clip=0", "train.weight_decay=0", "train.lr=1e-4",
                             "train.warmup_steps=0"])
    init_distributed()
    init_model_parallel(cfg)
    seed_all(0)
    engine, _ = build_engine(cfg)
    hf = BertForPreTraining(hf_config(cfg.model)).train()
    hf_optimizer = torch.optim.AdamW(hf.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-6,
                                     weight_decay=0.0)
    batch = make_batch(args.vocab, args.batch, args.seq)
    hf_batch = {"input_ids": batch["input_ids"], "token_type_ids": batch["token_type_ids"],
                "attention_mask": batch["attention_mask"], "labels": batch["mlm_labels"],
                "next_sentence_label": batch["next_sentence_label"]}

    def ours_step():
        out = engine(batch)
        engine.backward(out["loss"])
        engine.step()

    def hf_step():
        loss = hf(**hf_batch).loss
        loss.backward()
        hf_optimizer.step()
        hf_optimizer.zero_grad(set_to_none=True)

    times = {"plmscale": [], "hf": []}
    for i in range(args.warmup + args.steps):
        for name, step in (("plmscale", ours_step), ("hf", hf_step)):
            start = time.perf_counter()
            step()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    ours, theirs = statistics.median(times["plmscale"]), statistics.median(times["hf"])
    tokens = args.batch * args.seq
    print(f"config: layers={args.layers} hidden={args.hidden} heads={args.heads} vocab={args.vocab} "
          f"seq={args.seq} batch={args.batch} steps={args.steps} threads={torch.get_num_threads()} "
          f"hf_attention={hf.config._attn_implementation}")
    print(f"plmscale (DeepSpeed engine, ZeRO-0): {ours * 1e3:.1f} ms/step, {tokens / ours:,.0f} tokens/s")
    print(f"HF BertForPreTraining + AdamW:       {theirs * 1e3:.1f} ms/step, {tokens / theirs:,.0f} tokens/s")
    print(f"throughput ratio plmscale / HF: {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
