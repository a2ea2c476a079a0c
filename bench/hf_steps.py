"""The HF side of bench/train_step.py for the families whose objective is laid out by their own
sample builder (``plmscale/families/<f>/samples.py``): plmscale's batch is built by that builder
from random token documents, and HF's keyword arguments are derived from the same batch, so both
sides see the same tokens, targets, attention masks and positions.

What HF computes per family (``HF_STEPS``):

* llama: ``LlamaForCausalLM`` on GPT's packed windows; the targets (already shifted by the sample
  builder) go in as ``shift_labels``. Same computation.
* ernie: ``ErnieForPreTraining`` with ``task_type_ids``; loss = cross-entropy of its
  ``prediction_logits`` on the MLM targets. The batch is ERNIE 2.0's masking task (the start of
  every task schedule): plmscale's four task heads see no labels there and add zero loss, but they
  still run (HF has no ERNIE 2.0 task heads, so it skips that small cost).
* xlnet: ``XLNetLMHeadModel`` given the sample builder's ``perm_mask`` and ``target_mapping`` (one-hot
  of its ``target_positions``) and ``target_labels``. Same computation.
* mpnet: ``MPNetForMaskedLM`` on the masked-and-permuted layout (L + 2 pred rows): the permuted
  positions (+ ``position_offset``) as ``position_ids``, the two-stream visibility as a float
  additive [b, 1, S, S] mask, the targets on the last pred rows. HF's encoder builds its relative
  bias from 0..S-1 whatever the positions (and its ``position_ids`` path of ``compute_position_bias``
  does not batch), so the bench gives the instance a ``compute_position_bias`` that applies HF's own
  bucket function and bias table to the permuted positions. HF's head runs on all S rows, plmscale's
  on the pred query rows only; the loss is the same.
* unilm: ``BertForPreTraining`` with each sample's UniLM mask (from its token types) as a float
  additive [b, 1, s, s] mask, MLM targets and the NSP label (-100 on non-bidirectional samples; a
  batch needs one bidirectional sample, as HF's mean over no label is NaN). Same computation.
* glm: ``GPT2LMHeadModel`` plus the block-position table (an ``nn.Embedding``, trained with it, as
  the export writes it): ``inputs_embeds`` = word + block-position embeddings, the 2-D position ids'
  first row as ``position_ids``, the Part A prefix mask as a float additive 4-D mask, the Part B
  targets as ``shift_labels``. HF's head runs on every position, plmscale's on Part B only; the loss
  is the same.

ELMo has no HF class (bidirectional LSTM language model over character CNNs): not benchmarked.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Path:
    """A small sentencepiece model trained by data_prep on the bundled corpus' head: the special
    pieces' ids (and ERNIE's capitalised pieces) come from a real tokenizer."""
    from data_prep.tokenizer import train_tokenizer
    folder = Path(tempfile.mkdtemp(prefix="train_step_tokenizer_"))
    text = (REPO / "corpora" / "gothic_novels.txt").read_text()[:200_000]
    (folder / "head.txt").write_text(text)
    train_tokenizer([str(folder / "head.txt")], str(folder / "tokenizer.model"), 1000,
                    num_threads=1)
    return folder / "tokenizer.model"


def random_corpus(vocab: int, seed: int = 0, documents: int = 32):
    """A ``plmscale.data.Corpus`` of random documents: token ids uniform over the non-special ids
    below ``vocab``, sentences of 8-40 tokens, 75% of tokens word starts."""
    from data_prep.shards import Document

    from plmscale.data import Corpus
    from plmscale.data.tokenizer import SpecialTokens
    path = _tokenizer()
    tokens = SpecialTokens.from_model(path)
    rng = np.random.default_rng(seed)
    normal = np.setdiff1d(np.arange(vocab), tokens.special_ids)
    docs = []
    for _ in range(documents):
        n = int(rng.integers(300, 1500))
        starts = np.cumsum(np.concatenate([[0], rng.integers(8, 41, n // 8)]))
        docs.append(Document(token_ids=rng.choice(normal, n).astype(np.int32),
                             sentence_starts=starts[starts < n].astype(np.int32),
                             word_starts=(rng.random(n) < 0.75).astype(np.uint8),
                             phrase_spans=np.zeros((0, 2), np.int32),
                             entity_spans=np.zeros((0, 2), np.int32)))
    corpus = Corpus.__new__(Corpus)  # the Corpus' sampling over documents held in memory
    corpus.shards = SimpleNamespace(document=docs.__getitem__, tokenizer_path=path)
    corpus.tokens, corpus.directory = _with_vocab(tokens, vocab), Path("random")
    corpus._lengths = np.array([len(d.token_ids) for d in docs], dtype=np.int64)
    corpus._select(np.arange(documents), "")
    return corpus


def _with_vocab(tokens, vocab: int):
    """``tokens`` with the model's vocabulary: random replacements draw from all its normal ids."""
    import dataclasses
    return dataclasses.replace(tokens, vocab_size=vocab,
                               normal_ids=np.setdiff1d(np.arange(vocab), tokens.special_ids))


def sampled_batch(cfg, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Samples 0..batch-1 of the family's own sample builder over ``random_corpus``, stacked as the
    data loader stacks them."""
    from plmscale.families import get_family
    samples = get_family(cfg.model.family).samples(random_corpus(cfg.model.vocab_size, seed), cfg)
    items = [samples(i) for i in range(batch)]
    return {k: torch.from_numpy(np.stack([s[k] for s in items])) for k in items[0]}


def additive(hidden: torch.Tensor) -> torch.Tensor:
    """A boolean mask (True = hidden) as HF's float additive mask (transformers 5 ignores boolean
    4-D masks in eager attention and refuses 3-D ones)."""
    return torch.zeros(hidden.shape).masked_fill(hidden, torch.finfo(torch.float32).min)


def _causal_inputs(b, cfg):
    return {"input_ids": b["input_ids"], "labels": b["labels"], "shift_labels": b["labels"]}


def _ernie_inputs(b, cfg):
    return {k: b[k] for k in ("input_ids", "token_type_ids", "attention_mask", "task_type_ids",
                              "mlm_labels")}


def _xlnet_inputs(b, cfg):
    length = b["input_ids"].shape[1]
    return {"input_ids": b["input_ids"], "token_type_ids": b["token_type_ids"],
            "attention_mask": b["attention_mask"], "perm_mask": b["perm_mask"].float(),
            "target_mapping": F.one_hot(b["target_positions"], length).float(),
            "labels": b["target_labels"]}


def _mpnet_inputs(b, cfg):
    labels = torch.full_like(b["input_ids"], -100)
    labels[:, -b["mlm_labels"].shape[1]:] = b["mlm_labels"]
    return {"input_ids": b["input_ids"], "position_ids": b["position_ids"] + cfg.position_offset,
            "attention_mask": additive(~b["attention_visible"].bool())[:, None], "labels": labels}


def _unilm_inputs(b, cfg):
    from plmscale.objectives.unified_lm import unilm_attention_mask
    if (b["next_sentence_label"] == -100).all():
        raise ValueError("the UniLM batch holds no bidirectional sample: HF's NSP loss (a mean over "
                         "no label) would be NaN where plmscale's is 0; use a larger batch")
    return {"input_ids": b["input_ids"], "token_type_ids": b["token_type_ids"],
            "attention_mask": additive(unilm_attention_mask(b["token_type_ids"],
                                                            b["attention_mask"])),
            "labels": b["mlm_labels"], "next_sentence_label": b["next_sentence_label"]}


def _glm_inputs(b, cfg):
    from plmscale.objectives.blank_infilling import glm_attention_mask
    return {"input_ids": b["input_ids"], "block_position_ids": b["block_position_ids"],
            "position_ids": b["position_ids"],
            "attention_mask": additive(glm_attention_mask(b["part_a"], b["input_ids"].shape[1])),
            "labels": b["labels"], "shift_labels": b["labels"]}


def _output_loss(modules, kw):
    return modules[0](**kw).loss


def _ernie_loss(modules, kw):
    kw = dict(kw)
    labels = kw.pop("mlm_labels")
    logits = modules[0](**kw).prediction_logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))


def _mpnet_loss(modules, kw):
    encoder, positions = modules[0].mpnet.encoder, kw["position_ids"]

    def permuted_bias(hidden):  # HF's buckets and table on the permuted positions, [b, h, S, S]
        buckets = encoder.relative_position_bucket(positions[:, None, :] - positions[:, :, None],
                                                   num_buckets=encoder.config.relative_attention_num_buckets)
        return encoder.relative_attention_bias(buckets).permute(0, 3, 1, 2)

    encoder.compute_position_bias = permuted_bias
    return modules[0](**kw).loss


def _glm_loss(modules, kw):
    gpt2, blocks = modules
    kw = dict(kw)
    embeds = gpt2.transformer.wte(kw.pop("input_ids")) + blocks(kw.pop("block_position_ids"))
    return gpt2(inputs_embeds=embeds, **kw).loss


@dataclass(frozen=True)
class HFStep:
    """plmscale batch -> HF keyword arguments, and (HF modules, those arguments) -> loss."""

    inputs: Callable[[dict, object], dict]
    loss: Callable[[list, dict], torch.Tensor] = _output_loss


HF_STEPS = {"llama": HFStep(_causal_inputs), "ernie": HFStep(_ernie_inputs, _ernie_loss),
            "xlnet": HFStep(_xlnet_inputs), "mpnet": HFStep(_mpnet_inputs, _mpnet_loss),
            "unilm": HFStep(_unilm_inputs), "glm": HFStep(_glm_inputs, _glm_loss)}


def hf_modules(cfg, full: dict[str, torch.Tensor] | None = None) -> list[torch.nn.Module]:
    """The family's HF export class built from ``hf_config`` (plus GLM's block-position table),
    freshly initialised, or holding plmscale's ``full`` tensors through the family's export map."""
    import transformers

    from plmscale.export.hf import loaded_model, hf_export_spec
    from plmscale.families import get_family
    family = get_family(cfg.model.family)
    part = hf_export_spec(family.name).parts[0]
    config = family.hf_config(cfg.model)
    if full is None:
        model = getattr(transformers, part.model_class)(config)
    else:
        model = loaded_model(part, config, family.to_hf_state_dict(full, cfg.model))
    modules = [model.train()]
    if family.name == "glm":
        table = torch.nn.Embedding(cfg.model.max_position_embeddings, cfg.model.hidden_size)
        torch.nn.init.normal_(table.weight, std=cfg.model.init_std)  # as GPT-2's tables
        if full is not None:
            (make,) = part.extra_files.values()
            table.weight.data.copy_(make(full, cfg.model)["weight"])
        modules.append(table)
    return modules
