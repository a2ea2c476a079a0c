"""XLNet (Yang et al. 2019): a permutation language model on two-stream relative attention; the same
architecture as HF ``XLNetLMHeadModel`` (attn_type "bi", per-layer relative biases).

The state the pieces pass on: ``h`` (content stream, [b, L, H]), ``g`` (query stream, [b, m, H],
one row per predicted token, starting from the learned ``mask_emb``), ``relative`` (the sinusoidal
relative encodings, [2L, H]) and the masks built once from the batch. Batch keys: ``input_ids``
(original tokens: XLNet never writes a mask token into its input), ``token_type_ids``,
``attention_mask`` (1 = token), ``perm_mask`` [b, L, L] (True/1: i may not see j; HF's convention),
``target_positions`` [b, m] and ``target_labels`` [b, m] (-100 = padding row); see ``samples.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.families.xlnet.attention import (TwoStreamRelativeAttention,
                                               sinusoidal_relative_encoding)
from plmscale.models.common import (TiedVocabParallelLogits, gather_vocab_logits,
                                    padded_vocab_size, tp_world,
                                    vocab_parallel_loss_and_accuracy)
from plmscale.models.common.generation import extend_until_eos
from plmscale.models.common.megatron import vocab_parallel_embedding
from plmscale.models.common.mlp import MLP
from plmscale.objectives import IGNORE_INDEX


class XLNetEmbeddings(nn.Module):
    """Vocab-parallel ``word_embeddings`` and the query stream's start ``mask_emb`` [1, 1, H]."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__()
        self.word_embeddings = vocab_parallel_embedding(padded_vocab_size(cfg, tp_world()[1]),
                                                        cfg.hidden_size, precision)
        self.mask_emb = nn.Parameter(torch.empty(1, 1, cfg.hidden_size))
        self.dropout = nn.Dropout(cfg.hidden_dropout)


class XLNetLayer(nn.Module):
    """Two-stream relative attention, then one feed-forward block (post-LN) applied to each stream."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__()
        self.rel_attn = TwoStreamRelativeAttention(cfg, precision)
        self.ff = MLP(cfg, precision, inner_dropout=True)
        self.ff_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def _ff(self, x):
        return None if x is None else self.ff_layer_norm(x + self.dropout(self.ff(x)))

    def forward(self, h, g, relative, segments, content_mask, query_mask, target_positions,
                memory=None, memory_hidden=None):
        h, g = self.rel_attn(h, g, relative, segments, content_mask, query_mask, target_positions,
                             memory, memory_hidden)
        return self._ff(h), self._ff(g)


def xlnet_masks(state: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(content-stream mask, query-stream mask) [b, L, L], True = hidden, as HF builds them: the
    query stream hides ``perm_mask`` and padding keys; the content stream the same except that each
    position always sees itself. (None, None) when nothing is hidden."""
    perm, attention = state.get("perm_mask"), state.get("attention_mask")
    hidden = None if perm is None else perm.bool()
    if attention is not None:
        pad = (attention == 0)[:, None, :]
        hidden = pad if hidden is None else hidden | pad
    if hidden is None:
        return None, None
    length = hidden.shape[-1]
    hidden = hidden.expand(-1, length, -1)
    eye = torch.eye(length, dtype=torch.bool, device=hidden.device)
    return hidden & ~eye, hidden


# Batch keys that carry one row per segment: [b, n, ...] samples of n consecutive segments are
# run as b * n rows.
_PER_SEGMENT = ("token_type_ids", "attention_mask", "perm_mask", "target_positions",
                "target_labels")


def segment_memory(h: torch.Tensor, attention_mask: torch.Tensor | None, segments: int,
                   mem_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Transformer-XL memory for rows that are ``segments`` consecutive segments of one stream per
    sample (``h`` [b * n, L, H], a layer's input): row t's memory is the last ``mem_len`` inputs of
    this layer over segments 0..t-1 of its stream, without gradient (as HF's ``cache_mem`` after
    running the segments one after the other). Returns (memory [b * n, mem_len, H], hidden
    [b * n, mem_len]: True where the memory reaches before the stream's start, or padding)."""
    rows, length, size = h.shape
    stream = h.detach().reshape(rows // segments, segments * length, size)
    stream = torch.nn.functional.pad(stream, (0, 0, mem_len, 0))
    index = (torch.arange(segments, device=h.device)[:, None] * length
             + torch.arange(mem_len, device=h.device)[None])  # [n, M] into the padded stream
    memory = stream[:, index].flatten(0, 1)
    hidden = (index < mem_len).expand(rows // segments, -1, -1)
    if attention_mask is not None:
        valid = attention_mask.reshape(rows // segments, segments * length) != 0
        valid = torch.nn.functional.pad(valid, (mem_len, 0))
        hidden = hidden | ~valid[:, index]
    return memory, hidden.flatten(0, 1)


def xlnet_pieces(cfg: ModelConfig, precision: str = "fp32") -> list[Piece]:
    """[embeddings + relative encodings + masks] [layer] x num_layers, the tied LM head + loss.

    Memory (``cfg.mem_len`` > 0): a batch of [b, n, L] samples (n consecutive segments of one
    stream, ``samples.py``) runs as b * n rows; each layer reads, as memory, its own inputs for the
    earlier segments of the same stream (``segment_memory``). ``logits(..., mems=)`` takes the
    memory from the caller instead, as HF's ``mems``."""
    embeddings = {"xlnet.embeddings": lambda: XLNetEmbeddings(cfg, precision)}

    def embed(module, state):
        ids = state["input_ids"]
        if ids.dim() == 3:  # n segments per sample: one row per segment from here on
            state = {**state, **{k: state[k].flatten(0, 1) for k in _PER_SEGMENT if k in state}}
        flat = ids.flatten(0, -2)
        length = flat.shape[1]
        mlen = (cfg.mem_len if ids.dim() == 3 else
                state["mems"][0].shape[1] if state.get("mems") is not None else 0)
        relative = sinusoidal_relative_encoding(length, mlen + length, cfg.hidden_size, ids.device)
        content_mask, query_mask = xlnet_masks(state)
        out = {**state, "h": module.dropout(module.word_embeddings(flat)),
               "relative": module.dropout(relative.to(module.mask_emb.dtype))}
        if content_mask is not None:
            out.update(content_mask=content_mask, query_mask=query_mask)
        if "target_positions" in state:
            m = state["target_positions"].shape[1]
            out["g"] = module.dropout(module.mask_emb.expand(flat.shape[0], m, -1))
        return out

    def layer(index):
        def run(module, state):
            memory = hidden = None
            if state["input_ids"].dim() == 3:
                memory, hidden = segment_memory(state["h"], state.get("attention_mask"),
                                                state["input_ids"].shape[1], cfg.mem_len)
            elif state.get("mems") is not None:
                memory = state["mems"][index]
            h, g = module(state["h"], state.get("g"), state["relative"],
                          state.get("token_type_ids"), state.get("content_mask"),
                          state.get("query_mask"), state.get("target_positions"), memory, hidden)
            return {**state, "h": h, **({} if g is None else {"g": g})}
        return run

    def hand_over(module, state):  # the tied output projection reads the input embedding table
        return {**state, "word_embeddings": module.word_embeddings.output_table()}

    def loss(lm_loss, state):
        labels = state["target_labels"]
        selected = labels != IGNORE_INDEX
        hidden = lm_loss.dropout(state["g"])[selected]
        loss, accuracy = vocab_parallel_loss_and_accuracy(
            lm_loss(hidden, state["word_embeddings"]), labels[selected])
        return {"loss": loss, "plm_loss": loss, "plm_accuracy": accuracy}

    return ([Piece(embeddings, embed)]
            + [Piece({f"xlnet.layers.{i}": lambda: XLNetLayer(cfg, precision)}, layer(i),
                     layer=True) for i in range(cfg.num_layers)]
            + [Piece(embeddings, hand_over, tie=("word_embeddings.weight",)),
               Piece({"lm_loss": lambda: XLNetLMHead(cfg)}, loss)])


class XLNetLMHead(TiedVocabParallelLogits):
    """The tied output projection with its own bias (HF ``lm_loss``), after the output dropout."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(padded_vocab_size(cfg, tp_world()[1]), cfg.vocab_size)
        self.dropout = nn.Dropout(cfg.hidden_dropout)


class XLNetLMHeadModel(PiecewiseModel):
    """XLNet with its tied LM head. ``forward(batch)`` -> {"loss", "plm_loss", "plm_accuracy"}."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__(xlnet_pieces(cfg, precision), cfg)

    @torch.no_grad()
    def logits(self, input_ids, token_type_ids=None, attention_mask=None, perm_mask=None,
               target_mapping=None, mems=None):
        """Full-vocabulary logits as HF's ``XLNetLMHeadModel`` returns them: [b, m, V] of the query
        stream when ``target_mapping`` [b, m, L] (one-hot rows) is given, else [b, L, V] of the
        content stream. ``mems``: one [b, M, H] memory per layer (HF's ``mems`` batch-first)."""
        state = {"input_ids": input_ids, "token_type_ids": token_type_ids,
                 "attention_mask": attention_mask, "perm_mask": perm_mask, "mems": mems}
        if target_mapping is not None:
            state["target_positions"] = target_mapping.argmax(-1)
        state = self.run(state, self.pieces[:-1])
        hidden = state["g"] if target_mapping is not None else state["h"]
        return gather_vocab_logits(self.lm_loss(hidden, state["word_embeddings"]),
                                   self.cfg.vocab_size)

    @torch.no_grad()
    def greedy_generate(self, input_ids: torch.Tensor, max_new_tokens: int,
                        eos_id: int | None = None) -> torch.Tensor:
        """Greedy continuation [b, <= max_new_tokens] of ``input_ids`` [b, n], as HF's XLNet
        ``generate`` lays out each step: the ids so far plus one placeholder (id 0) that no
        position may see (``perm_mask``), whose query-stream logits (``target_mapping``) pick the
        next token: the factorisation order with the next position last. Every step reruns the
        whole text (bidirectional context: earlier tokens see the later ones). Collective over TP."""
        was_training = self.training
        self.eval()

        def next_token(ids):
            b, n = ids.shape
            ids = torch.cat([ids, ids.new_zeros(b, 1)], dim=1)
            perm = torch.zeros(b, n + 1, n + 1, device=ids.device)
            perm[:, :, -1] = 1.0
            target = torch.zeros(b, 1, n + 1, device=ids.device)
            target[:, 0, -1] = 1.0
            return self.logits(ids, perm_mask=perm, target_mapping=target)[:, 0].argmax(-1)

        new_ids = extend_until_eos(next_token, input_ids.long(), max_new_tokens, eos_id)
        self.train(was_training)
        return new_ids
