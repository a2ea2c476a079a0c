"""The HF -> plmscale direction of every family's name map, derived from its one definition
(``to_hf_state_dict`` / ``hf_config`` in ``plmscale/export/<family>.py``) instead of written twice.

State dicts: every element of every plmscale tensor gets a unique id (float64 holds integers
exactly up to 2**53); ``to_hf_state_dict`` on those ids says, for every element of every HF tensor,
which plmscale element it is (renames, q/k/v splits, transposes and tied copies all just move the
ids). Scattering HF's values back by id inverts the map exactly. An HF model that the map cannot
represent (two HF tensors plmscale holds as one but whose values differ, an HF tensor the map
never produces, a constant the map writes that HF holds otherwise) is refused by name.

Configs: each family's ``from_hf_config`` reads the architecture fields; ``check_config`` then runs
the forward ``hf_config`` on the result and refuses any field whose value it would not reproduce.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

FIRST_ID = 2 ** 24
"""Ids start here, above any small constant a map may write (BART's zero ``final_logits_bias``)."""

IGNORED_CONFIG_FIELDS = {"architectures", "transformers_version", "dtype", "torch_dtype",
                         "_name_or_path", "use_cache", "id2label", "label2id", "tie_word_embeddings",
                         "return_dict", "output_hidden_states", "output_attentions"}
"""HF config keys that do not describe the architecture's weights or arithmetic (special-token ids,
which come from the tokenizer, are also skipped: keys ending in ``_token_id``). Tying is checked
on the tensors themselves."""


class HFImportError(ValueError):
    """An HF model or folder that plmscale cannot import; the message names the tensor or field."""


def full_shapes(reference: dict[str, torch.nn.Parameter], vocab_size: int) -> dict[str, tuple]:
    """Full (unpartitioned, unpadded) shapes of the ordinary model's parameters from meta-device
    parameters built for any tensor-parallel layout (``shards.reference_parameters``)."""
    from megatron.core import parallel_state as ps
    tp = ps.get_tensor_model_parallel_world_size()
    shapes = {}
    for name, param in reference.items():
        shape = list(param.shape)
        if getattr(param, "tensor_model_parallel", False):
            shape[param.partition_dim] *= tp
        if getattr(param, "vocab_padded", False):
            shape[0] = vocab_size
        shapes[name] = tuple(shape)
    return shapes


def from_hf_state_dict(to_hf: Callable[[dict, object], dict], hf_state: dict[str, torch.Tensor],
                       shapes: dict[str, tuple], cfg) -> dict[str, torch.Tensor]:
    """HF tensors -> full plmscale tensors (fp32) of the given shapes: the exact inverse of
    ``to_hf(full, cfg)``. Raises ``HFImportError`` naming what does not fit."""
    ids, start = {}, FIRST_ID
    for name, shape in shapes.items():
        count = math.prod(shape)
        ids[name] = torch.arange(start, start + count, dtype=torch.float64).reshape(shape)
        start += count
    traced = to_hf(ids, cfg)
    values = torch.zeros(start - FIRST_ID, dtype=torch.float32)
    covered = torch.zeros(start - FIRST_ID, dtype=torch.bool)
    sources = {}
    for hf_name, where in traced.items():
        if hf_name not in hf_state:
            raise HFImportError(f"the HF model has no tensor {hf_name}, which plmscale's "
                               f"{cfg.family} needs")
        value = hf_state[hf_name].detach().float().cpu()
        if tuple(value.shape) != tuple(where.shape):
            raise HFImportError(f"HF tensor {hf_name} has shape {tuple(value.shape)}; the config "
                               f"read from config.json implies {tuple(where.shape)}")
        where, value = where.flatten(), value.flatten()
        constant = where < FIRST_ID
        if constant.any() and not torch.equal(value[constant], where[constant].float()):
            raise HFImportError(f"HF tensor {hf_name} is not the constant plmscale's {cfg.family} "
                               f"implies (it has no plmscale parameter): it cannot be imported")
        index = where[~constant].long() - FIRST_ID
        values[index] = value[~constant]
        covered[index] = True
        sources[hf_name] = (index, value[~constant])
    for hf_name, (index, value) in sources.items():  # tied copies must agree
        if not torch.equal(values[index], value):
            raise HFImportError(f"HF tensor {hf_name} differs from another HF tensor that plmscale's "
                               f"{cfg.family} holds as the same parameter (e.g. untied word "
                               f"embeddings and output layer): it cannot be imported as is")
    full, offset = {}, 0
    for name, shape in shapes.items():
        count = math.prod(shape)
        if not covered[offset:offset + count].all():
            raise HFImportError(f"plmscale parameter {name} is not filled by the {cfg.family} map")
        full[name] = values[offset:offset + count].reshape(shape).clone()
        offset += count
    return full


def unmapped_tensors(hf_model: torch.nn.Module, mapped: set[str]) -> list[str]:
    """HF parameters the map did not read that are not tied copies of ones it read."""
    state = hf_model.state_dict()
    read = {state[name].data_ptr() for name in mapped if name in state}
    return [name for name, tensor in state.items()
            if name not in mapped and tensor.data_ptr() not in read
            and not name.endswith(("position_ids", "token_type_ids"))]


def check_config(forward_config, hf_config) -> None:
    """Refuse an HF config that the forward ``hf_config`` of the imported model config would not
    reproduce: the field, both values."""
    ours, theirs = forward_config.to_dict(), hf_config.to_dict()
    for key, value in ours.items():
        if key in IGNORED_CONFIG_FIELDS or key.endswith("_token_id") or key not in theirs:
            continue
        close = isinstance(value, float) and isinstance(theirs[key], (int, float)) \
            and math.isclose(value, theirs[key], rel_tol=1e-9)
        if theirs[key] != value and not close:
            raise HFImportError(f"HF config {key}={theirs[key]!r} has no plmscale equivalent "
                               f"(plmscale's {hf_config.model_type} would write {value!r})")
