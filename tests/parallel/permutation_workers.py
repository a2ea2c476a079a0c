"""Rank functions for the XLNet and MPNet parallel tests (module-level so spawned ranks can import
them)."""

from __future__ import annotations

import numpy as np
import torch
from closeness import closeness
from workers_common import load_exported, tp2_and_tp1, tp2_vs_tp1

from plmscale.config import load_config
from plmscale.families import get_family
from plmscale.objectives.permutation import permutation_mask, sample_prediction_mask
from plmscale.parallel import init_distributed

# 4 heads so that TP=2 splits them; vocab 1100 leaves TP padding columns in the last rank's slice.
# init_std 0.2: XLNet has no embedding LayerNorm, so at 0.02 the scores are ~1e-5 and the first
# layer's attention gradients ~1e-6 of the largest ones (round-off level for the comparison).
TINY_XLNET = ["model.preset=xlnet-tiny", "model.num_attention_heads=4", "model.vocab_size=1100",
        "model.hidden_dropout=0", "model.attention_dropout=0", "model.init_std=0.2"]


TINY_MPNET = ["model.preset=mpnet-tiny", "model.num_attention_heads=4", "model.vocab_size=1100",
              "model.max_position_embeddings=64", "model.hidden_dropout=0",
              "model.attention_dropout=0", "model.init_std=0.2"]


def fixed_batch(vocab: int, batch: int = 4, seq: int = 24, rows: int = 5, seed: int = 7,
                lengths: list[int] | None = None) -> dict:
    """Two segments and a [CLS] (types 0, 1, 2), padding on two rows (default ``lengths``), the
    objective's own targets and factorisation orders (one target with the highest id, next to the
    TP padding columns); identical on every rank."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(10, vocab, (batch, seq))
    lengths = lengths or [seq, seq, seq - 6, 13]
    out = {k: np.zeros((batch,) + shape, dtype=dtype) for k, shape, dtype in (
        ("token_type_ids", (seq,), np.int64), ("attention_mask", (seq,), np.int64),
        ("perm_mask", (seq, seq), bool), ("target_positions", (rows,), np.int64))}
    out["target_labels"] = np.full((batch, rows), -100)
    for b, n in enumerate(lengths):
        cut = n // 2
        ids[b, [cut, n - 2]], ids[b, n - 1], ids[b, n:] = 3, 4, 0  # [SEP] ... [SEP] [CLS] [PAD]
        out["token_type_ids"][b, cut + 1:n - 1], out["token_type_ids"][b, n - 1] = 1, 2
        out["attention_mask"][b, :n] = 1
        functional = np.zeros(seq, bool)
        functional[[cut, n - 2, n - 1]] = True
        text = np.flatnonzero(~functional[:n])
        chosen = sample_prediction_mask(len(text), np.ones(len(text), bool), rows - (b == 3),
                                        rng, 3, 3)
        predicted = np.zeros(seq, bool)
        predicted[text[chosen]] = True
        out["perm_mask"][b] = permutation_mask(predicted, functional, rng)
        positions = np.flatnonzero(predicted)
        out["target_positions"][b, :len(positions)] = positions
        out["target_labels"][b, :len(positions)] = ids[b, positions]
    ids[0, out["target_positions"][0, 0]] = out["target_labels"][0, 0] = vocab - 1
    out["input_ids"] = ids
    return {k: torch.from_numpy(v) for k, v in out.items()}


def _target_mapping(batch: dict) -> torch.Tensor:
    """HF's [b, m, L] one-hot rows (zero rows for the unused target slots)."""
    seq = batch["input_ids"].shape[1]
    mapping = torch.nn.functional.one_hot(batch["target_positions"], seq).float()
    return mapping * (batch["target_labels"] != -100)[..., None]


def _logits(model, batch: dict) -> list[torch.Tensor]:
    """Query-stream logits with the factorisation order, and content-stream logits without."""
    return [model.logits(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                         batch["perm_mask"], _target_mapping(batch)),
            model.logits(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])]


def compare_with_hf(cfg, params: dict, logits: list, batch: dict, grads: dict) -> dict:
    """Export ``params`` to ``XLNetLMHeadModel``: closeness of our logits (with perm_mask and
    target_mapping, and plain) and of the gradients of the same loss."""
    import transformers
    fam = get_family("xlnet")
    hf = transformers.XLNetLMHeadModel(fam.hf_config(cfg.model)).eval()
    load_exported(hf, fam.to_hf_state_dict(params, cfg.model))
    common = {"input_ids": batch["input_ids"], "token_type_ids": batch["token_type_ids"],
              "attention_mask": batch["attention_mask"].float()}
    out = hf(**common, perm_mask=batch["perm_mask"].float(), target_mapping=_target_mapping(batch),
             labels=batch["target_labels"])
    plain = hf(**common).logits
    valid = batch["target_labels"] != -100  # HF's unused target rows are not ours to match
    result = {"hf_logit_diff": closeness([logits[0][valid], logits[1]],
                                         [out.logits[valid], plain], "HF logits"),
              "hf_loss": out.loss.item()}
    out.loss.backward()
    ours = fam.to_hf_state_dict(grads, cfg.model)
    result["hf_grad_diff"] = closeness({n: ours[n] for n, _ in hf.named_parameters()},
                                       {n: p.grad for n, p in hf.named_parameters()}, "HF grads")
    return result


def xlnet_vs_single() -> dict:
    """TP=2 vs TP=1 on identical weights and batch (metrics, gathered gradients, logits), and both
    against HF after export (logits with perm_mask and target_mapping, loss, gradients)."""
    cfg = load_config(None, TINY_XLNET)
    batch = fixed_batch(cfg.model.vocab_size)
    a, b = tp2_and_tp1(cfg, batch, lambda model: _logits(model, batch))
    result = {**tp2_vs_tp1(a, b), "metric_names": sorted(a["out"]),
              "logits": closeness(a["logits"], b["logits"], "TP=2 vs TP=1 logits"),
              "loss": b["out"]["loss"]}
    hf = compare_with_hf(cfg, a["params"], a["logits"], batch, a["grads"])
    result.update(hf)
    result["hf_loss_diff"] = closeness(b["out"]["loss"], hf["hf_loss"], "HF loss")
    return result


def mpnet_batch(vocab: int, batch: int = 4, length: int = 20, seed: int = 3) -> dict:
    """The objective's own two-stream layout (round(0.15 L) predicted; one row short, with unused
    slots) over random ids, identical on every rank, and a standard-order batch with padding."""
    from plmscale.objectives.masked_permutation import predicted_count, two_stream_visibility
    rng = np.random.default_rng(seed)
    pred = predicted_count(length, 0.15)
    rows = {"input_ids": [], "position_ids": [], "attention_visible": [], "mlm_labels": []}
    for b in range(batch):
        used = pred - (b == 3)
        ids = rng.integers(10, vocab, length)
        order = rng.permutation(length)
        predicted = order[length - used:]
        masked = np.where(rng.random(used) < 0.8, 5, ids[predicted])
        block = np.concatenate([masked, np.zeros(pred - used, dtype=np.int64)])
        slots = np.concatenate([predicted, np.zeros(pred - used, dtype=np.int64)])
        rows["input_ids"].append(np.concatenate([ids[order], block, block]))
        rows["position_ids"].append(np.concatenate([order, slots, slots]))
        rows["attention_visible"].append(two_stream_visibility(length, pred, used))
        rows["mlm_labels"].append(np.concatenate([ids[predicted], np.full(pred - used, -100)]))
    rows["mlm_labels"][0][0] = vocab - 1
    rows["input_ids"][0][length - pred] = vocab - 1
    out = {k: torch.from_numpy(np.stack(v)) for k, v in rows.items()}
    standard = torch.from_numpy(rng.integers(10, vocab, (batch, length)))
    attention = torch.ones(batch, length, dtype=torch.long)
    attention[2, 13:] = 0
    return out, standard.masked_fill(attention == 0, 1), attention


def mpnet_vs_single() -> dict:
    """TP=2 vs TP=1 on the two-stream batch (metrics, gathered gradients, standard-order logits),
    and HF ``MPNetForMaskedLM`` after export: standard-order logits, loss and gradients of an MLM
    loss on them."""
    import transformers
    cfg = load_config(None, TINY_MPNET)
    batch, standard, attention = mpnet_batch(cfg.model.vocab_size)
    a, b = tp2_and_tp1(cfg, batch, lambda model: [model.logits(standard, attention)])
    result = {**tp2_vs_tp1(a, b), "metric_names": sorted(a["out"]),
              "logits": closeness(a["logits"], b["logits"], "TP=2 vs TP=1 logits"),
              "loss": b["out"]["loss"]}
    fam = get_family("mpnet")
    hf = transformers.MPNetForMaskedLM(fam.hf_config(cfg.model)).eval()
    load_exported(hf, fam.to_hf_state_dict(a["params"], cfg.model))
    ours = a["logits"][0]
    real = attention.bool()
    result["hf_logit_diff"] = closeness(ours[real], hf(input_ids=standard,
                                        attention_mask=attention).logits[real], "HF logits")
    return result


MEMORY = ["model.mem_len=24", "objective.memory_segments=3"]  # segments of 16: memory spans two


def memory_batch(vocab: int, samples: int = 2, segments: int = 3, seq: int = 16) -> dict:
    """``samples`` x ``segments`` full segments of the objective's layout: [b, n, ...] arrays."""
    flat = fixed_batch(vocab, samples * segments, seq, lengths=[seq] * (samples * segments))
    return {k: v.reshape(samples, segments, *v.shape[1:]) for k, v in flat.items()}


def _hf_sequential(hf, batch: dict, carry: bool = True):
    """HF's loss over the segments of ``batch`` run one after the other with ``mems`` carried
    (``carry``; predicted-token weighted mean, as ours), and the memories each segment read."""
    total, count, mems, read = 0.0, 0, None, []
    for t in range(batch["input_ids"].shape[1]):
        seg = {k: v[:, t].contiguous() for k, v in batch.items()}
        read.append(mems)
        out = hf(input_ids=seg["input_ids"], token_type_ids=seg["token_type_ids"],
                 attention_mask=seg["attention_mask"].float(), perm_mask=seg["perm_mask"].float(),
                 target_mapping=_target_mapping(seg), labels=seg["target_labels"], mems=mems,
                 use_mems=True)
        n = int((seg["target_labels"] != -100).sum())
        total, count, mems = total + out.loss * n, count + n, out.mems if carry else None
    return total / count, read


def xlnet_memory_vs_single() -> dict:
    """XLNet with Transformer-XL memory: samples of 3 consecutive segments (memory 24 > segment 16,
    so it spans two of them). TP=2 vs TP=1 (metrics, gathered gradients, logits given ``mems``);
    against HF after export: our loss and gradients on the [b, 3, L] batch equal HF's running the
    segments in order with ``mems`` carried, and our logits given a memory equal HF's given the
    same ``mems``."""
    import transformers
    cfg = load_config(None, TINY_XLNET + MEMORY)
    batch = memory_batch(cfg.model.vocab_size)
    last = {k: v[:, -1].contiguous() for k, v in batch.items()}
    mems = [0.5 * torch.randn(2, 24, cfg.model.hidden_size, generator=torch.Generator().manual_seed(i))
            for i in range(cfg.model.num_layers)]

    def with_mems(model):
        return [model.logits(last["input_ids"], last["token_type_ids"], last["attention_mask"],
                             last["perm_mask"], _target_mapping(last), mems)]
    a, b = tp2_and_tp1(cfg, batch, with_mems)
    result = {**tp2_vs_tp1(a, b), "logits": closeness(a["logits"], b["logits"], "TP logits")}
    fam = get_family("xlnet")
    hf = transformers.XLNetLMHeadModel(fam.hf_config(cfg.model)).eval()
    load_exported(hf, fam.to_hf_state_dict(a["params"], cfg.model))
    loss, read = _hf_sequential(hf, batch)
    assert read[2][0].shape[0] == 24  # HF's own memory for the last segment: 8 + 16 tokens
    result["hf_loss_diff"] = closeness(a["out"]["loss"], loss.item(), "HF loss with mems")
    with torch.no_grad():
        result["without_memory_loss_change"] = abs(_hf_sequential(hf, batch, False)[0].item()
                                                   - loss.item())
    loss.backward()
    ours = fam.to_hf_state_dict(a["grads"], cfg.model)
    result["hf_grad_diff"] = closeness({n: ours[n] for n, _ in hf.named_parameters()},
                                       {n: p.grad for n, p in hf.named_parameters()}, "HF grads")
    with torch.no_grad():
        theirs = hf(input_ids=last["input_ids"], token_type_ids=last["token_type_ids"],
                    attention_mask=last["attention_mask"].float(), perm_mask=last["perm_mask"].float(),
                    target_mapping=_target_mapping(last), mems=[m.transpose(0, 1) for m in mems],
                    use_mems=True).logits
    valid = last["target_labels"] != -100
    result["hf_logit_diff"] = closeness(a["logits"][0][valid], theirs[valid], "HF logits with mems")
    return result


def xlnet_generation() -> dict:
    """Greedy tokens at TP=2 (XLNetLMHeadModel.greedy_generate) and HF ``generate`` on the exported
    weights of the same model (the same initialisation at every layout), for a batch of 2 prompts:
    HF with ``use_mems=False`` reruns the whole text each step, as ours."""
    import transformers

    from plmscale.export import full_tensors
    from workers_common import initialised_model
    cfg = load_config(None, TINY_XLNET + ["parallel.tensor_model_parallel_size=2"])
    model = initialised_model(cfg).eval()
    prompt = torch.from_numpy(np.random.default_rng(5).integers(10, cfg.model.vocab_size, (2, 7)))
    ours = model.greedy_generate(prompt, 8)
    fam = get_family("xlnet")
    hf = transformers.XLNetLMHeadModel(fam.hf_config(cfg.model)).eval()
    load_exported(hf, fam.to_hf_state_dict(full_tensors(model, cfg.model.vocab_size), cfg.model))
    with torch.no_grad():
        theirs = hf.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0,
                             use_mems=False)
    return {"ours": ours.tolist(), "hf": theirs[:, 7:].tolist()}


def tensor_parallel_vs_single() -> dict:
    """Both families' checks in one rank group, XLNet with memory and XLNet generation too."""
    init_distributed()
    return {"xlnet": xlnet_vs_single(), "mpnet": mpnet_vs_single(),
            "xlnet_memory": xlnet_memory_vs_single(), "xlnet_generation": xlnet_generation()}
