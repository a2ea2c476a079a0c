"""BART (Lewis et al. 2020): post-LN encoder-decoder with a LayerNorm on the embeddings, learned
positions (offset 2), GELU, one word embedding shared by the encoder, the decoder and the LM head; the
same architecture as HF ``BartForConditionalGeneration`` (whose ``final_logits_bias`` is a zero buffer,
not a parameter: our head has no bias and export writes zeros).

Pieces: [``shared`` word embeddings of both id streams] [each stack's positions + LayerNorm]
[encoder layer]... [decoder layer]... [``shared`` again for the tied head] [LM head + loss]; the
encoder output travels with the decoder stream.
"""

from __future__ import annotations

import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.bert.model import encoder_pieces
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.models.common import (PostLNLayer, TiedVocabParallelLogits, gather_vocab_logits,
                                    labelled_metrics, padded_vocab_size, padding_mask, tp_world)
from plmscale.models.common.generation import encoder_decoder_greedy
from plmscale.models.common.megatron import vocab_parallel_embedding


class PositionsAndNorm(nn.Module):
    """Adds learned positions (index offset ``cfg.position_offset``, as HF's
    ``BartLearnedPositionalEmbedding``) to the word embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.position_offset = cfg.position_offset
        self.embed_positions = nn.Embedding(cfg.max_position_embeddings + cfg.position_offset,
                                            cfg.hidden_size)
        self.layernorm_embedding = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, word_embeddings: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(word_embeddings.shape[1], device=word_embeddings.device)
        hidden = word_embeddings + self.embed_positions(positions + self.position_offset)[None]
        return self.dropout(self.layernorm_embedding(hidden))


def bart_pieces(cfg: ModelConfig, precision: str = "fp32") -> list[Piece]:
    """BART with its denoising loss (over the labelled decoder positions) as pieces."""
    padded = padded_vocab_size(cfg, tp_world()[1])
    shared = {"shared": lambda: vocab_parallel_embedding(padded, cfg.hidden_size, precision)}

    def embed(module, state):
        state = {**state, "hidden": module(state["input_ids"])}
        if "decoder_input_ids" in state:
            state["decoder_hidden"] = module(state["decoder_input_ids"])
        return state

    def positions(stream):
        return lambda module, state: {**state, stream: module(state[stream])}

    def decoder_layer(module, state):
        return {**state, "decoder_hidden": module(state["decoder_hidden"], None, state["hidden"],
                                                  padding_mask(state.get("attention_mask")))}

    def loss(lm_head, state):
        return labelled_metrics("lm", lambda h: lm_head(h, state["word_embeddings"]),
                                state["decoder_hidden"], state["labels"])

    decoder_layers = cfg.num_decoder_layers if cfg.num_decoder_layers is not None else cfg.num_layers
    return ([Piece(shared, embed),
             Piece({"encoder.embeddings": lambda: PositionsAndNorm(cfg)}, positions("hidden")),
             Piece({"decoder.embeddings": lambda: PositionsAndNorm(cfg)}, positions("decoder_hidden"))]
            + encoder_pieces(cfg, precision, "encoder")[1:-1]  # BERT's layers, not its embeddings
            + [Piece({f"decoder.layers.{i}": lambda: PostLNLayer(cfg, precision, causal=True,
                                                                  cross_attention=True)},
                     decoder_layer, layer=True) for i in range(decoder_layers)]
            + [Piece(shared, lambda module, state: {**state, "word_embeddings": module.output_table()}),
               Piece({"lm_head": lambda: TiedVocabParallelLogits(padded, cfg.vocab_size, bias=False)},
                     loss)])


class BartForConditionalGeneration(PiecewiseModel):
    """BART with its tied LM head. ``forward(batch)`` takes ``input_ids``, ``attention_mask``,
    ``decoder_input_ids`` and ``labels`` (-100 = not scored) and returns the reconstruction loss."""

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__(bart_pieces(cfg, precision), cfg)

    def encode(self, input_ids, attention_mask=None) -> torch.Tensor:
        """Encoder output [b, s, h]."""
        return self.run({"hidden": self.shared(input_ids), "attention_mask": attention_mask},
                        self.pieces_under("encoder."))["hidden"]

    def decode(self, decoder_input_ids, memory, attention_mask=None) -> torch.Tensor:
        """Last decoder hidden states [b, t, h] attending to the encoder output ``memory``."""
        return self.run({"decoder_hidden": self.shared(decoder_input_ids), "hidden": memory,
                         "attention_mask": attention_mask},
                        self.pieces_under("decoder."))["decoder_hidden"]

    def head(self, hidden):
        """This TP rank's vocabulary slice of the logits (padding columns are -inf)."""
        return self.lm_head(hidden, self.shared.weight)

    @torch.no_grad()
    def logits(self, input_ids, attention_mask=None, decoder_input_ids=None) -> torch.Tensor:
        """Full-vocabulary LM logits [b, t, V], as HF's model returns them."""
        hidden = self.decode(decoder_input_ids, self.encode(input_ids, attention_mask), attention_mask)
        return gather_vocab_logits(self.head(hidden), self.cfg.vocab_size)

    @torch.no_grad()
    def greedy_generate(self, input_ids: torch.Tensor, max_new_tokens: int,
                        eos_id: int | None = None, decoder_start_id: int | None = None,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Up to ``max_new_tokens`` argmax decoder tokens [b, n] for the encoder inputs ``input_ids``
        [b, s] (``<s> text </s>``, as the denoising samples). The decoder starts from
        ``decoder_start_id``, by default ``eos_id`` (training's decoder inputs are the labels
        ``<s> text </s>`` shifted right behind ``</s>``, HF's decoder_start_token_id), so the first
        token generated is normally ``<s>``.

        The encoder runs once; the decoder recomputes its prefix each step, which learned positions
        bound to ``max_position_embeddings`` tokens (generation stops there). Stops early once every
        row has produced ``eos_id`` (finished rows are filled with it). Collective over the TP
        group. Called by ``launch/generate.py``.
        """
        start = eos_id if decoder_start_id is None else decoder_start_id
        if start is None:
            raise ValueError("BART's decoder starts from </s>: pass eos_id or decoder_start_id")
        return encoder_decoder_greedy(self, input_ids, start, min(
            max_new_tokens, self.cfg.max_position_embeddings), eos_id, attention_mask)
