"""Training-step throughput of every HF-backed family: plmscale (TP=1, through its DeepSpeed engine,
ZeRO-0, fp32) against the family's ``transformers`` reference with the same config, batch and
optimizer (AdamW with plmscale's settings, `plmscale.config.adamw_params`: same hyper-parameters,
torch's fused kernel on the CPU), in one run.

    python bench/train_step.py [--families bert,gpt,...] [--size small|base] [--steps 10]
                               [--compile] [--record bench/RESULTS.md]

Steps of the two are interleaved (alternating which goes first) so that machine noise hits both
alike; the ratio of median step times (HF / plmscale, > 1 means plmscale is faster) is what counts.
Each family runs in a fresh process: the allocator state one family's steps leave behind changes
the next family's step times (seen: GPT-2 small's HF step 2.3 s alone, 2.8 s after BERT-base).
The reference of a pretraining objective HF has no single class for is the same computation built
from HF classes: ELECTRA = ``ElectraForMaskedLM`` generator + Gumbel sampling +
``ElectraForPreTraining`` discriminator sharing one embedding module; DistilBERT = a frozen HF
``BertForMaskedLM`` teacher (twice the student's depth) + ``DistilBertForMaskedLM`` with
Sanh et al.'s loss (KL at T=2, MLM, cosine). Llama, ERNIE, XLNet, MPNet, UniLM and GLM: the batch
is the family's own sample builder's over random token documents and HF's arguments are derived
from it (permutation masks, 4-D float masks, 2-D positions; bench/hf_steps.py says per family what
HF runs and where it differs; tests/unit/test_train_step_bench.py proves the losses equal on copied
weights). ELMo has no HF class (a bidirectional LSTM LM over character CNNs): not benchmarked.

Each side's FLOPs per step are counted on one extra (untimed) step with
``torch.utils.flop_counter.FlopCounterMode`` (the matmuls and attention it actually ran, forward and
backward), so the achieved GFLOP/s compares the two per FLOP; the fraction is of the machine's fp32
GEMM peak, measured in the same run (a 2048^2 matmul, best of several, before and after the steps).
``--compile`` adds two sides to the same interleaved run: plmscale with ``train.compile`` (each
transformer layer compiled by Inductor, ``plmscale.training.compile``) and the HF reference with its
layers (the entries of its ``ModuleList``s) compiled the same way, so the compiled comparison is like
for like while the "HF" columns stay the eager reference the issue names; a second table reports
them. The first step of a compiled side compiles: keep ``--warmup`` >= 1 (2 to be safe).
``--size tiny`` (width 64) is for the unit test; ``--size base`` is BERT-base / GPT-2 small
(12 x 768, 12 heads, FFN 3072; 6 or 6+6 layers for DistilBERT and the encoder-decoders).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hf_steps import HF_STEPS, hf_modules, sampled_batch  # noqa: E402  (bench/, next to this file)

SEQ, DECODER = {"t5": 32}, 128  # decoder lengths: T5 span-corruption targets, BART the full text
# family -> (preset, overrides): 4 layers (2+2 for encoder-decoders) of width 256, each family's
# released vocabulary size.
FAMILIES = {
    "bert": ("bert-tiny", ["model.num_layers=4", "model.vocab_size=30522"]),
    "roberta": ("roberta-tiny", ["model.num_layers=4", "model.vocab_size=50265"]),
    "albert": ("albert-tiny", ["model.num_layers=4", "model.vocab_size=30000",
                               "model.embedding_size=128"]),
    "electra": ("electra-tiny", ["model.num_layers=4", "model.vocab_size=30522",
                                 "model.embedding_size=128", "model.generator_hidden_size=64",
                                 "model.generator_num_attention_heads=1",
                                 "model.generator_ffn_hidden_size=256"]),
    "distilbert": ("distilbert-tiny", ["model.num_layers=2", "model.vocab_size=30522"]),
    "gpt": ("gpt-tiny", ["model.num_layers=4", "model.vocab_size=50257",
                         "model.max_position_embeddings=1024"]),
    "t5": ("t5-tiny", ["model.num_layers=2", "model.num_decoder_layers=2", "model.kv_channels=64",
                       "model.vocab_size=32128"]),
    "bart": ("bart-tiny", ["model.num_layers=2", "model.num_decoder_layers=2",
                           "model.vocab_size=50265"]),
    # Batches from the family's own sample builder, HF arguments derived from them (hf_steps.py).
    "llama": ("llama-tiny", ["model.num_layers=4", "model.vocab_size=32000"]),
    "ernie": ("ernie-2.0-tiny", ["model.num_layers=4", "model.vocab_size=30522"]),
    "xlnet": ("xlnet-tiny", ["model.num_layers=4", "model.vocab_size=32000"]),
    "mpnet": ("mpnet-tiny", ["model.num_layers=4", "model.vocab_size=30527"]),
    "unilm": ("unilm-tiny", ["model.num_layers=4", "model.vocab_size=28996"]),
    "glm": ("glm-tiny", ["model.num_layers=4", "model.vocab_size=30592"]),
}


SIZES = {"tiny": ["model.hidden_size=64", "model.num_attention_heads=2", "model.ffn_hidden_size=128"],
         "small": ["model.hidden_size=256", "model.num_attention_heads=4", "model.ffn_hidden_size=1024"],
         "base": ["model.hidden_size=768", "model.num_attention_heads=12", "model.ffn_hidden_size=3072",
                  "model.generator_hidden_size=256", "model.generator_num_attention_heads=4",
                  "model.generator_ffn_hidden_size=1024"]}


def base_layers(family: str) -> list[str]:
    """BERT-base / GPT-2 small depth; DistilBERT half of it, encoder-decoders 6 + 6."""
    if family in ("t5", "bart"):
        return ["model.num_layers=6", "model.num_decoder_layers=6"]
    return [f"model.num_layers={6 if family == 'distilbert' else 12}"]


def config(family: str, args):
    from plmscale.config import load_config
    preset, extra = FAMILIES[family]
    size = SIZES[args.size] + (base_layers(family) if args.size == "base" else [])
    if family != "electra":
        size = [o for o in size if ".generator_" not in o]
    return load_config(None, [f"model.preset={preset}", *extra, *size,
                              f"model.attention_backend={args.attention_backend}",
                              "model.hidden_dropout=0", "model.attention_dropout=0",
                              f"train.micro_batch_size={args.batch}", f"data.seq_length={args.seq}",
                              "parallel.zero_stage=0", "train.grad_clip=0", "train.weight_decay=0",
                              "train.lr=1e-4", "train.warmup_steps=0"])


def batches(family: str, cfg, g: torch.Generator):
    """(plmscale batch, HF keyword arguments) with the same tokens and targets."""
    vocab, batch, seq = cfg.model.vocab_size, cfg.train.micro_batch_size, cfg.data.seq_length
    if family in HF_STEPS:
        ours = sampled_batch(cfg, batch, seed=int(torch.randint(2**31, (1,), generator=g)))
        return ours, HF_STEPS[family].inputs(ours, cfg.model)
    ids = torch.randint(200, vocab, (batch, seq + 1), generator=g)
    ones = torch.ones(batch, seq, dtype=torch.long)
    if family == "gpt":  # HF shifts its labels itself
        return ({"input_ids": ids[:, :-1], "labels": ids[:, 1:]},
                {"input_ids": ids[:, :-1], "labels": ids[:, :-1]})
    ids = ids[:, :-1]
    if family in ("t5", "bart"):
        length = DECODER if family == "bart" else SEQ["t5"]
        dec = torch.randint(200, vocab, (batch, length + 1), generator=g)
        inputs, targets = dec[:, :-1].contiguous(), dec[:, 1:].contiguous()
        ours = {"input_ids": ids, "attention_mask": ones, "decoder_input_ids": inputs,
                "decoder_attention_mask": torch.ones_like(inputs), "labels": targets}
        return ours, {"input_ids": ids, "attention_mask": ones, "decoder_input_ids": inputs,
                      "labels": targets}
    labels = torch.full_like(ids, -100)
    chosen = torch.rand(ids.shape, generator=g) < 0.15
    labels[chosen] = ids[chosen]
    ours = {"input_ids": ids, "attention_mask": ones, "mlm_labels": labels}
    hf = {"input_ids": ids, "attention_mask": ones, "labels": labels}
    if family in ("bert", "albert", "electra"):
        ours["token_type_ids"] = hf["token_type_ids"] = (torch.arange(seq) >= seq // 2).long().expand(batch, -1)
    if family == "bert":
        ours["next_sentence_label"] = hf["next_sentence_label"] = torch.randint(0, 2, (batch,), generator=g)
    if family == "albert":
        ours["sentence_order_label"] = hf["sentence_order_label"] = torch.randint(0, 2, (batch,), generator=g)
    return ours, hf


def plmscale_engine(cfg):
    from plmscale.families import build_model
    from plmscale.parallel import initialize_parameters
    from plmscale.training.engine import build_engine
    if cfg.model.family != "distilbert":
        return build_engine(cfg)[0]
    student = build_model(cfg)  # the teacher comes from a checkpoint in training; here, built
    initialize_parameters(student, 0, cfg.model.init_std, cfg.model.vocab_size)
    student.set_teacher(_teacher(cfg, plmscale=True))
    return build_engine(cfg, student)[0]


def _teacher_config(cfg):
    return dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, family="bert", num_layers=2 * cfg.model.num_layers, type_vocab_size=2))


def _teacher(cfg, plmscale: bool):
    from plmscale.families import build_model
    from plmscale.parallel import initialize_parameters
    teacher_cfg = _teacher_config(cfg)
    if plmscale:
        teacher = build_model(teacher_cfg)
        initialize_parameters(teacher, 1, cfg.model.init_std, cfg.model.vocab_size)
    else:
        import transformers
        from plmscale.families.bert.hf import hf_config
        teacher = transformers.BertForMaskedLM(hf_config(teacher_cfg.model))
    return teacher.eval().requires_grad_(False)


def hf_reference(family: str, cfg):
    """(trainable HF modules, loss function of the HF batch)."""
    import transformers
    from plmscale.families import get_family
    fam = get_family(family)
    if family in HF_STEPS:
        modules = hf_modules(cfg)
        return modules, lambda b: HF_STEPS[family].loss(modules, b)
    if family == "electra":
        from plmscale.families.electra.hf import generator_hf_config, hf_config
        generator = transformers.ElectraForMaskedLM(generator_hf_config(cfg.model)).train()
        discriminator = transformers.ElectraForPreTraining(hf_config(cfg.model)).train()
        discriminator.electra.embeddings = generator.electra.embeddings  # shared, as ELECTRA's

        def loss(b):
            out = generator(**b)
            selected = b["labels"] != -100
            with torch.no_grad():
                logits = out.logits[selected].float()
                gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_min(1e-20)))
                corrupted = b["input_ids"].clone()
                corrupted[selected] = (logits + gumbel).argmax(-1)
                replaced = (corrupted != torch.where(selected, b["labels"], b["input_ids"])).long()
            rtd = discriminator(corrupted, attention_mask=b["attention_mask"],
                                token_type_ids=b["token_type_ids"], labels=replaced).loss
            return out.loss + cfg.objective.rtd_weight * rtd
        return [generator, discriminator], loss
    if family == "distilbert":
        student = transformers.DistilBertForMaskedLM(fam.hf_config(cfg.model)).train()
        teacher = _teacher(cfg, plmscale=False)
        o = cfg.objective

        def loss(b):
            active = b["attention_mask"].bool()
            with torch.no_grad():
                t_out = teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                output_hidden_states=True)
            s_out = student(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                            labels=b["labels"], output_hidden_states=True)
            temp = o.distillation_temperature
            kl = F.kl_div(F.log_softmax(s_out.logits[active] / temp, -1),
                          F.softmax(t_out.logits[active] / temp, -1), reduction="batchmean")
            s_h, t_h = s_out.hidden_states[-1][active], t_out.hidden_states[-1][active]
            cosine = (1 - F.cosine_similarity(s_h, t_h, dim=-1)).mean()
            return (o.distillation_alpha_ce * kl * temp**2 + o.distillation_alpha_mlm * s_out.loss
                    + o.distillation_alpha_cos * cosine)
        return [student], loss
    model = getattr(transformers, fam.hf_model_class)(fam.hf_config(cfg.model)).train()
    return [model], lambda b: model(**b).loss


def sides(family: str, cfg):
    """Both sides of the comparison on one batch: (plmscale's engine, the HF reference's modules
    and optimizer, one plmscale training step, one HF training step)."""
    from plmscale.config import adamw_params
    from plmscale.parallel import init_model_parallel, seed_all
    init_model_parallel(cfg)
    seed_all(0)
    engine = plmscale_engine(cfg)
    modules, hf_loss = hf_reference(family, cfg)
    params = list({id(p): p for m in modules for p in m.parameters()}.values())
    optimizer = torch.optim.AdamW(params, **adamw_params(cfg.train))  # plmscale's, fused on CPU
    ours_batch, hf_batch = batches(family, cfg, torch.Generator().manual_seed(0))

    def ours_step():
        out = engine(ours_batch)
        engine.backward(out["loss"])
        engine.step()

    def hf_step():
        hf_loss(hf_batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return engine, modules, optimizer, ours_step, hf_step


def compiled_sides(family: str, cfg):
    """Both sides compiled: plmscale with ``train.compile`` (through its engine) and the HF
    reference with every entry of its layer ``ModuleList``s compiled the same way (Inductor, static
    shapes; graph breaks allowed, HF's code is not ours to fix). (plmscale step, HF step)."""
    compiled = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=True))
    _, modules, _, ours_step, hf_step = sides(family, compiled)
    for module in modules:
        for stack in module.modules():
            if isinstance(stack, torch.nn.ModuleList):
                for layer in stack:
                    layer.compile(dynamic=False)
    return ours_step, hf_step


def interleaved_times(steps, warmup: int, count: int) -> dict:
    """Run ``steps`` [(key, step function)] ``warmup + count`` rounds, the order rotating each round
    so that machine noise hits every side alike; {key: the ``count`` timed seconds}."""
    times = {key: [] for key, _ in steps}
    for i in range(warmup + count):
        shift = i % len(steps)
        for key, step in steps[shift:] + steps[:shift]:
            start = time.perf_counter()
            step()
            if i >= warmup:
                times[key].append(time.perf_counter() - start)
    return times


def bench_in_this_process(family: str, args) -> dict:
    """:func:`bench` in a process of its own (a world of one rank)."""
    from plmscale.parallel import init_distributed
    init_distributed()
    return bench(family, args)


def bench(family: str, args) -> dict:
    cfg = config(family, args)
    engine, modules, optimizer, ours_step, hf_step = sides(family, cfg)
    steps = [("plmscale", ours_step), ("hf", hf_step)]
    if args.compile:
        ours_compiled, hf_compiled = compiled_sides(family, cfg)
        steps += [("plmscale_compiled", ours_compiled), ("hf_compiled", hf_compiled)]
    peak = gemm_gflops()
    times = interleaved_times(steps, args.warmup, args.steps)
    peak = max(peak, gemm_gflops())
    medians = {name: statistics.median(t) for name, t in times.items()}
    # Counted on the eager sides (a compiled step runs the same matmuls and attention).
    flops = {name: counted_flops(step) for name, step in steps[:2]}
    reference = " + ".join(type(m).__name__ for m in modules)
    return {"family": family, "ours": medians["plmscale"], "hf": medians["hf"],
            "ratio": medians["hf"] / medians["plmscale"],
            "compiled": {k: v for k, v in medians.items() if k.endswith("_compiled")},
            "reference": reference, "vocab": cfg.model.vocab_size,
            "attention": getattr(modules[0].config, "_attn_implementation", "?"),
            "ours_flops": flops["plmscale"], "hf_flops": flops["hf"], "peak": peak}


def counted_flops(step) -> float:
    """FLOPs of one (untimed) call of ``step``, as FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 GEMM rate now (GFLOP/s): the best of ``repeats`` n x n matmuls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _rate(row: dict, side: str) -> str:
    gflop = row[f"{side}_flops"] / 1e9
    rate = gflop / row[side]
    return f"{gflop:.1f}, {rate:.0f}, {rate / row['peak']:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--attention-backend", default="sdpa",
                        help="plmscale's model.attention_backend (sdpa, fused-softmax, reference)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true",
                        help="also run both sides with their transformer layers compiled (Inductor)")
    parser.add_argument("--record", default=None, help="append the table to this markdown file")
    args = parser.parse_args()
    started = datetime.now(timezone.utc)
    rows = []
    for family in args.families.split(","):
        if family not in FAMILIES:
            raise SystemExit(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
            row = fresh.submit(bench_in_this_process, family, args).result()
        rows.append(row)
        print(f"{family}: plmscale {row['ours'] * 1e3:.0f} ms/step, {row['reference']} "
              f"{row['hf'] * 1e3:.0f} ms/step, ratio {row['ratio']:.2f}; "
              f"{_rate(row, 'ours')} vs {_rate(row, 'hf')}", flush=True)
    load = os.getloadavg()
    size = {"tiny": "width 64, 2 heads, FFN 128, 4 layers or 2+2",
            "small": "width 256, 4 heads, FFN 1024, 4 layers or 2+2",
            "base": "BERT-base / GPT-2 small: width 768, 12 heads, FFN 3072, 12 layers "
                    "(DistilBERT 6, 6+6)"}[args.size]
    lines = [f"\n### {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()}-core CPU box, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads, load average at the end "
             f"{load[0]:.1f} (shared with other jobs)\n",
             f"Command: `python bench/train_step.py {' '.join(sys.argv[1:])}` ({size}, "
             f"attention {args.attention_backend}, seq {args.seq} (T5 decoder {SEQ['t5']}, BART decoder "
             f"{DECODER}), batch {args.batch}, {args.steps} interleaved steps after {args.warmup} "
             f"warm-up, medians; FLOPs counted by FlopCounterMode on one more step; GEMM peak: best "
             f"2048^2 fp32 matmul in the same run).\n",
             "| family | HF reference (attention) | vocab | plmscale ms/step | HF ms/step | ratio HF/plmscale "
             "| plmscale GFLOP/step, GFLOP/s, of peak | HF GFLOP/step, GFLOP/s, of peak | GEMM peak GFLOP/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['reference']} ({r['attention']}) | {r['vocab']} | "
                     f"{r['ours'] * 1e3:.0f} | {r['hf'] * 1e3:.0f} | **{r['ratio']:.2f}** | "
                     f"{_rate(r, 'ours')} | {_rate(r, 'hf')} | {r['peak']:.0f} |")
    if args.compile:
        lines += compiled_table(rows)
    emit("\n".join(lines) + "\n", args.record)


def compiled_table(rows: list[dict]) -> list[str]:
    """The ``--compile`` sides of the same run: ms/step and rate (of the eager sides' FLOPs)."""
    lines = ["\nSame run, transformer layers compiled (plmscale `train.compile`, HF's layer "
             "ModuleList entries `.compile(dynamic=False)`), interleaved with the eager sides above:\n",
             "| family | plmscale eager ms | plmscale compiled ms | compile speed-up plmscale | "
             "HF eager ms | HF compiled ms | compile speed-up HF | HF eager / plmscale compiled "
             "| HF compiled / plmscale compiled | plmscale compiled GFLOP/s, of peak |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ours, theirs = r["compiled"]["plmscale_compiled"], r["compiled"]["hf_compiled"]
        rate = r["ours_flops"] / 1e9 / ours
        lines.append(f"| {r['family']} | {r['ours'] * 1e3:.0f} | {ours * 1e3:.0f} | "
                     f"{r['ours'] / ours:.2f}x | {r['hf'] * 1e3:.0f} | {theirs * 1e3:.0f} | "
                     f"{r['hf'] / theirs:.2f}x | **{r['hf'] / ours:.2f}** | **{theirs / ours:.2f}** | "
                     f"{rate:.0f}, {rate / r['peak']:.0%} |")
    return lines


def emit(text: str, record: str | None) -> None:
    """Print a result table and append it to the markdown file ``record`` when given."""
    print(text)
    if record:
        with open(record, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
