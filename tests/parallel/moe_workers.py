"""Rank functions for the mixture-of-experts tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

import torch
from closeness import closeness
from workers_common import grad_norm

from plmscale.config import load_config, validate_config
from plmscale.export import full_tensors
from plmscale.parallel import init_distributed, init_model_parallel, seed_all

TINY = ["model.preset=gpt-tiny", "model.vocab_size=1100", "model.max_position_embeddings=64",
        "model.hidden_dropout=0", "model.attention_dropout=0", "data.seq_length=24",
        "train.micro_batch_size=2", "parallel.zero_stage=0", "train.warmup_steps=0",
        "model.num_experts=4", "model.moe_dropless=true", "model.moe_z_loss_coeff=0.001"]

# name -> (tensor-parallel size, expert-parallel size); 4 ranks, so data-parallel = 4 / TP.
LAYOUTS = {"TP1 x EP1": (1, 1), "TP1 x EP2": (1, 2), "TP1 x EP4": (1, 4), "TP2 x EP2": (2, 2)}


def micro_batches(vocab: int, count: int = 4, batch: int = 2, seq: int = 24) -> list[dict]:
    """``count`` fixed next-token micro-batches: global micro-batch i of every layout."""
    g = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, vocab, (count, batch, seq + 1), generator=g)
    return [{"input_ids": t[:, :-1], "labels": t[:, 1:]} for t in tokens]


def layout_config(overrides: list[str], tp: int, ep: int, dp: int):
    return load_config(None, TINY + overrides + [
        f"parallel.tensor_model_parallel_size={tp}", f"model.expert_model_parallel_size={ep}",
        f"train.gradient_accumulation_steps={4 // dp}"])


def layout_step(overrides: list[str], tp: int, ep: int, engine_out: list | None = None) -> dict:
    """One optimiser step's forward/backward on the DeepSpeed engine (ZeRO-0, so the reduced
    gradients stay in ``.grad``): every layout covers the same 4 micro-batches (data-parallel rank d
    takes global micro-batch a * dp + d at accumulation step a). Returns the metrics averaged over
    micro-batches and data-parallel ranks, and the gathered gradients under global names."""
    import torch.distributed as dist

    from plmscale.training.engine import build_engine
    from plmscale.training.metrics import average_over_data_parallel
    from megatron.core import parallel_state as ps
    dp = dist.get_world_size() // tp
    cfg = layout_config(overrides, tp, ep, dp)
    validate_config(cfg, dist.get_world_size())
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    engine, _ = build_engine(cfg)
    batches = micro_batches(cfg.model.vocab_size)
    sums: dict[str, float] = {}
    for a in range(4 // dp):
        out = engine(batches[a * dp + ps.get_data_parallel_rank()])
        engine.backward(out["loss"])
        if a + 1 < 4 // dp:
            engine.step()  # counts the micro-step: the last backward is the accumulation boundary
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v) / (4 // dp)
    if engine_out is not None:
        engine_out[:] = [engine, cfg]
    return {"metrics": average_over_data_parallel(sums),
            "grads": full_tensors(engine.module, cfg.model.vocab_size, grads=True)}


def _difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _moments(engine) -> dict[str, torch.Tensor]:
    """This rank's Adam moments (ZeRO-0: the torch optimizer's state, by parameter number)."""
    state = engine.optimizer.state_dict()["state"]
    return {f"{i}.{key}": value.clone() for i, entry in state.items()
            for key, value in entry.items() if key in ("exp_avg", "exp_avg_sq")}


def resume_across_expert_parallel_sizes(directory: str, first: tuple, later: list) -> dict:
    """Save after a step at layout ``first`` = (tp, ep); then for each (tp, ep) of ``later``: load
    the previous checkpoint (another expert-parallel size: DeepSpeed's per-expert files), compare
    the weights with what was saved (exactly), step once and save again. The shard reader's full
    tensors of every checkpoint are compared with the weights saved too."""
    import torch.distributed as dist

    from plmscale.export.shards import read_full_tensors
    from plmscale.training import checkpoint
    from plmscale.training.engine import build_engine
    held = []
    layout_step([], *first, engine_out=held)
    engine, cfg = held
    engine.step()
    checkpoint.save(engine, f"{directory}/0", 1, 4, cfg)
    saved, moments = full_tensors(engine.module, cfg.model.vocab_size), _moments(engine)
    found = {f"read TP{first[0]} x EP{first[1]}": _difference(read_full_tensors(f"{directory}/0")[1], saved)}
    # (keys: "load at <layout> #i" = weights after loading save i - 1; "moments at <layout> #i" =
    # this rank's Adam moments after loading a save of the same layout; "read <layout> #i" = the
    # shard reader on save i)
    for i, (tp, ep) in enumerate(later, 1):
        cfg = layout_config([], tp, ep, dist.get_world_size() // tp)
        init_model_parallel(cfg)
        engine, _ = build_engine(cfg)
        step, _, _ = checkpoint.load(engine, f"{directory}/{i - 1}", cfg=cfg)
        loaded = full_tensors(engine.module, cfg.model.vocab_size)
        found[f"load at TP{tp} x EP{ep} #{i}"] = _difference(loaded, saved) if step == i else float("nan")
        if (tp, ep) == ([first] + later)[i - 1]:
            found[f"moments at TP{tp} x EP{ep} #{i}"] = _difference(_moments(engine), moments)
        batch = micro_batches(cfg.model.vocab_size)[0]
        # A whole accumulation cycle: DeepSpeed reduces the gradients in the boundary's backward
        # (without it, TP peers would step their experts, each on its half of the slots, apart).
        for _ in range(cfg.train.gradient_accumulation_steps):
            engine.backward(engine(batch)["loss"])
            engine.step()
        checkpoint.save(engine, f"{directory}/{i}", i + 1, 4, cfg)
        saved, moments = full_tensors(engine.module, cfg.model.vocab_size), _moments(engine)
        found[f"read TP{tp} x EP{ep} #{i}"] = _difference(read_full_tensors(f"{directory}/{i}")[1], saved)
    return found


def routing_statistics() -> dict:
    """DeepSpeed's gate on fixed routings (one rank's view; EP=1): the dropped fraction and the
    auxiliary loss the MoE block reports, for the hand computations in the test."""
    from plmscale.models.moe.layer import MoEFeedForward
    from plmscale.models.moe.parallel import create_expert_groups
    results = {}
    cases = {  # name -> (experts, top-k, hidden states); hidden size = experts, router = identity
        "hand top-1": (2, 1, torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.5, 0.0], [0.0, 3.0]])),
        "random top-1": (4, 1, torch.randn(64, 4, generator=torch.Generator().manual_seed(3))),
        "random top-2": (4, 2, torch.randn(64, 4, generator=torch.Generator().manual_seed(4))),
        "random top-3": (8, 3, torch.randn(64, 8, generator=torch.Generator().manual_seed(5))),
    }
    for name, (experts, k, hidden) in cases.items():
        cfg = load_config(None, TINY + [f"model.num_experts={experts}", f"model.moe_top_k={k}",
                                        "model.moe_dropless=false", "model.moe_capacity_factor=1.0",
                                        f"model.hidden_size={experts}", "model.num_attention_heads=1"])
        init_model_parallel(cfg)
        create_expert_groups(cfg)
        block = MoEFeedForward(cfg.model)
        block.moe.set_deepspeed_parallelism()
        with torch.no_grad():
            block.moe.deepspeed_moe.gate.wg.weight.copy_(torch.eye(experts))
        block(hidden[None])
        r = block.routing
        results[name] = {"hidden": hidden, "k": k, "aux": float(r.aux_loss), "z": float(r.z_loss),
                         "dropped": float(r.dropped_fraction),
                         "load": float(r.load_max_over_mean)}
    return results


def gather_shim_check() -> dict:
    """Under the current TP=2 groups: the shim DeepSpeed's MoE now calls gathers the TP ranks'
    N-D tensors along a middle dimension (what ``_gather_tokens`` means to do, and on gloo cannot)."""
    from deepspeed.moe import mappings
    from megatron.core import parallel_state as ps

    from plmscale.models.moe.compat import gather_tokens_flat
    rank, size = ps.get_tensor_model_parallel_rank(), ps.get_tensor_model_parallel_world_size()
    mine = torch.arange(24.0).view(2, 3, 4) + 100 * rank
    want = torch.cat([torch.arange(24.0).view(2, 3, 4) + 100 * r for r in range(size)], dim=1)
    return {"installed": mappings._gather_tokens is gather_tokens_flat, "tp": size,
            "diff": float((gather_tokens_flat(mine, dim=1) - want).abs().max())}


def moe_layouts(directory: str) -> dict:
    """Every layout of ``LAYOUTS`` against TP1 x EP1 (metrics incl. the auxiliary and z losses, and
    gathered gradients), the routing statistics, and checkpoints across expert-parallel sizes
    (EP1 -> EP2 -> EP4 -> EP1 and TP2 x EP2 -> TP2 x EP1 -> TP2 x EP2 -> TP2 x EP2, the last
    with the optimizer state, under ``directory``)."""
    init_distributed()
    resumes = resume_across_expert_parallel_sizes(f"{directory}/tp1", (1, 1), [(1, 2), (1, 4), (1, 1)])
    resumes.update(resume_across_expert_parallel_sizes(f"{directory}/tp2", (2, 2),
                                                       [(2, 1), (2, 2), (2, 2)]))
    runs = {name: layout_step([], tp, ep) for name, (tp, ep) in LAYOUTS.items()}
    shim = gather_shim_check()  # the last layout is TP=2
    reference = runs["TP1 x EP1"]
    result = {"resumes": resumes, "shim": shim, "routing": routing_statistics(), "grad_norm": grad_norm(reference["grads"]),
              "metrics": reference["metrics"], "expert_grads": sorted(
                  n for n in reference["grads"] if "deepspeed_experts" in n)}
    for name, run in runs.items():
        assert run["grads"].keys() == reference["grads"].keys(), name
        result[name] = {"metrics": closeness(run["metrics"], reference["metrics"], f"{name} metrics"),
                        "grads": closeness(run["grads"], reference["grads"], f"{name} grads")}
    return result
