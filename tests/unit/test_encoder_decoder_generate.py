"""Greedy decoding of the encoder-decoder families (T5, BART) equals HF ``generate`` (greedy, no beams)
on the exported weights: same tokens, same early stop at eos, with encoder padding."""

from types import SimpleNamespace

import pytest
import torch

from plmscale.config import load_config
from plmscale.export import full_tensors
from plmscale.parallel import init_model_parallel, seed_all
from plmscale.training.engine import build_initialised_model

# data_prep's tokenizer layout: [PAD]=0, <s>=2, </s>=3.
PAD, BOS, EOS = 0, 2, 3
VOCAB = 1100
NEW = 12
FACTOR = 8.0

pytestmark = pytest.mark.usefixtures("single_rank")


def _livelier(model, factor: float) -> None:
    """Scale up the layers' projection weights: at initialisation the residual stream keeps the
    decoder input's embedding, so a tied head just repeats the start token; scaled layers make the
    greedy output vary, so the comparison covers many distinct steps."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and ".layers." in name:
                param.mul_(factor)


def _prompts(bos: int | None):
    """Two prompts ending in eos (BART: also starting with <s>); the second is padded."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(10, VOCAB, (2, 9), generator=g)
    lengths = torch.tensor([9, 6])
    if bos is not None:
        ids[:, 0] = bos
    ids[torch.arange(2), lengths - 1] = EOS
    mask = (torch.arange(9)[None] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, PAD), mask


def _hf_greedy(hf, ids, mask, start: int, eos: int) -> list[list[int]]:
    from transformers import GenerationConfig
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=NEW,
                              decoder_start_token_id=start, eos_token_id=eos, pad_token_id=PAD,
                              bos_token_id=BOS)
    # Nothing of the model's own generation config (BART's forced eos at max length) may apply.
    hf.generation_config.forced_eos_token_id = None
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    assert (out[:, 0] == start).all()
    return [_until_eos(row[1:].tolist(), eos) for row in out]


def _until_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[:tokens.index(eos) + 1] if eos in tokens else tokens


def _ours(model, ids, mask, start: int, eos: int) -> list[list[int]]:
    out = model.greedy_generate(ids, NEW, eos_id=eos, decoder_start_id=start, attention_mask=mask)
    return [_until_eos(row.tolist(), eos) for row in out]


def _check_against_hf(model, hf, ids, mask, start: int):
    """Compare with an eos the model never produces, then with one it produces mid-way (early stop).
    Returns the second run's tokens."""
    first = _ours(model, ids, mask, start, eos=EOS)
    assert first == _hf_greedy(hf, ids, mask, start, eos=EOS)
    # A token that row 0 first produces mid-way becomes "eos": row 0 must stop right there.
    step = next(k for k in range(2, len(first[0])) if first[0][k] not in first[0][:k])
    eos = first[0][step]
    second = _ours(model, ids, mask, start, eos=eos)
    assert second == _hf_greedy(hf, ids, mask, start, eos=eos)
    assert second[0] == first[0][:step + 1]
    return first, second


def test_t5_greedy_generate_matches_hf():
    from plmscale.families.t5.hf import to_hf_model
    cfg = load_config(None, ["model.preset=t5-tiny", f"model.vocab_size={VOCAB}",
                             "model.hidden_dropout=0", "model.attention_dropout=0",
                             "model.relative_attention_num_buckets=8",
                             "model.relative_attention_max_distance=16"])
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    model = build_initialised_model(cfg).eval()
    _livelier(model, FACTOR)
    hf = to_hf_model(full_tensors(model, VOCAB), cfg.model, pad_token_id=PAD, eos_token_id=EOS)
    ids, mask = _prompts(bos=None)
    _check_against_hf(model, hf, ids, mask, start=PAD)
    # The default decoder start is T5's (pad = 0).
    default = model.greedy_generate(ids, NEW, eos_id=EOS, attention_mask=mask)
    assert torch.equal(default, model.greedy_generate(ids, NEW, eos_id=EOS, decoder_start_id=PAD,
                                                      attention_mask=mask))


def test_bart_greedy_generate_matches_hf():
    from transformers import BartForConditionalGeneration

    from plmscale.families.bart import FAMILY
    from plmscale.families.bart.hf import hf_config
    cfg = load_config(None, ["model.preset=bart-tiny", f"model.vocab_size={VOCAB}",
                             "model.max_position_embeddings=64", "model.hidden_dropout=0",
                             "model.attention_dropout=0"])
    init_model_parallel(cfg)
    seed_all(cfg.train.seed)
    model = build_initialised_model(cfg).eval()
    _livelier(model, FACTOR)
    tokens = SimpleNamespace(pad=PAD, bos=BOS, eos=EOS)
    hf = BartForConditionalGeneration(hf_config(cfg.model, tokens)).eval()
    hf.load_state_dict(FAMILY.to_hf_state_dict(full_tensors(model, VOCAB), cfg.model), strict=True)
    ids, mask = _prompts(bos=BOS)
    _check_against_hf(model, hf, ids, mask, start=EOS)
    # By default the decoder starts from </s> (eos_id), as BART's training decoder inputs do.
    default = model.greedy_generate(ids, NEW, eos_id=EOS, attention_mask=mask)
    assert torch.equal(default, model.greedy_generate(ids, NEW, eos_id=EOS, decoder_start_id=EOS,
                                                      attention_mask=mask))
