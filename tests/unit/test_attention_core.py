"""``attention_core.attend``: the three backends (sdpa, fused-softmax, reference) give the same
context and the same gradients (q, k, v and T5's position bias) for every mask kind, with dropout too
on the CPU; dropout is drawn on the TP rank's own stream, so it leaves the shared stream untouched
and replays from the same seeds (a resumed run). The ``gpu`` variants run the same on CUDA, where
sdpa picks its flash / memory-efficient kernels and fused-softmax the csrc kernel (no dropout there:
each kernel draws its own masks). Per family and at TP=2: tests/parallel/test_attention_backends.py."""

import pytest
import torch
from closeness import assert_close

from plmscale.config import load_config
from plmscale.config.loading import ConfigError
from plmscale.config.validation import validate_config
from plmscale.config.schema import ATTENTION_BACKENDS
from plmscale.models.common.attention_core import attend
from plmscale.objectives.causal_lm import document_attention_mask
from plmscale.parallel import seed_all

B, H, S, D = 3, 4, 24, 16


def mask_kind(kind: str, device) -> dict:
    """attend() keyword arguments of one mask kind (masks: True = hidden), sq = sk = S unless cross."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([S, S - 5, 7])
    padding = (torch.arange(S)[None] >= lengths[:, None])[:, None, None, :]
    if kind == "none":
        return {}
    if kind == "causal":
        return {"causal": True}
    if kind == "padding":
        return {"mask": padding.to(device)}
    if kind == "general":  # per-sample [b, 1, s, s] (UniLM / prefix-LM style), one fully hidden row
        general = torch.rand(B, 1, S, S, generator=g) < 0.5
        general[1, 0, 3] = True
        return {"mask": general.to(device)}
    if kind == "t5 bias":  # relative position bias for every head, on top of padding
        bias = torch.randn(1, H, S, S, generator=g).to(device).requires_grad_()
        return {"mask": padding.to(device), "bias": bias}
    if kind == "t5 decoder bias":
        return {"causal": True, "bias": torch.randn(1, H, S, S, generator=g).to(device).requires_grad_()}
    if kind == "document resets":  # packed documents, causal within each
        documents = torch.cumsum(torch.rand(B, S, generator=g) < 0.2, dim=1)
        return {"mask": document_attention_mask(documents).to(device), "causal": True}
    if kind == "cross padding":  # queries S, keys S + 8 (handled by the caller's shapes)
        keys = S + 8
        return {"mask": (torch.arange(keys)[None] >= torch.tensor([keys, 9, 1])[:, None])
                [:, None, None, :].to(device)}
    raise ValueError(kind)


KINDS = ["none", "causal", "padding", "general", "t5 bias", "t5 decoder bias", "document resets",
         "cross padding"]


def run_backends(kind: str, device: str, dropout: float) -> dict:
    g = torch.Generator().manual_seed(0)
    sk = S + 8 if kind == "cross padding" else S
    q = torch.randn(B, H, S, D, generator=g)
    k, v = (torch.randn(B, H, sk, D, generator=g) for _ in range(2))
    upstream = torch.randn(B, H, S, D, generator=g).to(device)
    extra = mask_kind(kind, device)
    runs = {}
    for backend in ATTENTION_BACKENDS:
        leaves = [t.to(device).requires_grad_() for t in (q, k, v)]
        seed_all(5)
        out = attend(*leaves, scale=D ** -0.5, dropout_p=dropout, backend=backend, **extra)
        inputs = leaves + ([extra["bias"]] if "bias" in extra else [])
        grads = torch.autograd.grad((out * upstream).sum(), inputs)
        runs[backend] = {"context": out.detach().cpu(),
                         **{f"grad {i}": g.cpu() for i, g in enumerate(grads)}}
    return runs


def check_backends(kind: str, device: str, dropout: float) -> None:
    runs = run_backends(kind, device, dropout)
    want = runs["reference"]
    assert all(g.abs().max() > 0 for g in want.values())
    for backend in ATTENTION_BACKENDS:
        assert_close(runs[backend], want, f"{kind}, {backend} vs reference, dropout {dropout}")
    if kind == "general":  # the fully hidden query row gives a zero context in every backend
        assert all(r["context"][1, :, 3].abs().max() == 0 for r in runs.values())


@pytest.mark.parametrize("dropout", [0.0, 0.2])
@pytest.mark.parametrize("kind", KINDS)
def test_backends_agree_on_cpu(kind, dropout):
    check_backends(kind, "cpu", dropout)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", KINDS)
def test_backends_agree_on_gpu(kind):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    check_backends(kind, "cuda", 0.0)


@pytest.mark.parametrize("backend", ATTENTION_BACKENDS)
def test_dropout_uses_the_tp_stream_and_replays(backend):
    q = k = v = torch.randn(2, 2, 8, 4)
    seed_all(3)
    shared = torch.get_rng_state()
    first = attend(q, k, v, scale=0.5, dropout_p=0.5, backend=backend, causal=True)
    assert torch.equal(torch.get_rng_state(), shared)  # the shared (hidden-dropout) stream untouched
    second = attend(q, k, v, scale=0.5, dropout_p=0.5, backend=backend, causal=True)
    assert (first - second).abs().max() > 0  # the stream moved on: a new mask
    seed_all(3)  # what a resumed run does at that step
    assert (attend(q, k, v, scale=0.5, dropout_p=0.5, backend=backend, causal=True) - first).abs().max() == 0


def test_unknown_backend_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match="attention_backend='flash'.*sdpa, fused-softmax, reference"):
        validate_config(load_config(None, ["model.attention_backend=flash"]), world_size=1)
