"""T5 (Raffel et al. 2020): pre-LN encoder-decoder with RMSNorm, no biases, shared relative position
bias, unscaled attention; v1.0 (ReLU FFN, tied embeddings with 1/sqrt(d_model) output scaling) and
v1.1 (gated-GELU FFN, untied LM head). The same architecture as HF ``T5ForConditionalGeneration``.

Pieces: [embed both id streams] [encoder layer]... [encoder norm] [decoder layer]... [decoder norm]
[head + loss]. The encoder output travels with the decoder stream; each stack's first layer owns its
relative position bias and puts it in the state gathered over TP (all heads), so a later layer on any
stage takes its heads' slice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.tensor_parallel import VocabParallelEmbedding
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.models.common import (SelfAttention, TiedVocabParallelLogits, gather_vocab_logits,
                                    labelled_metrics, padded_vocab_size, padding_mask, tp_world)
from plmscale.models.common.cross_attention import CrossAttention
from plmscale.models.common.generation import encoder_decoder_greedy
from plmscale.models.common.heads import GatherFromTensorParallel, ScatterToTensorParallel
from plmscale.models.common.megatron import vocab_parallel_embedding
from plmscale.models.common.mlp import MLP
from plmscale.models.common.norms import build_norm
from plmscale.models.common.prenorm import PreLNLayer
from plmscale.models.common.relative_position import RelativePositionBias
from plmscale.models.moe.layer import ExpertMLP

def _layer(cfg: ModelConfig, precision: str, decoder: bool, number: int) -> PreLNLayer:
    """A T5 block; the first layer of a stack owns its relative position bias (``t5_pieces`` hands
    it on). T5 folds the 1/sqrt(d) of the attention scores into its initialisation: scale 1."""
    return PreLNLayer(cfg, precision, causal=decoder, cross_attention=decoder, attention_scale=1.0,
                      inner_dropout=True, layer_number=number,
                      relative_position_bias=(RelativePositionBias(cfg, bidirectional=not decoder)
                                              if number == 0 else None))


def t5_pieces(cfg: ModelConfig, precision: str = "fp32") -> list[Piece]:
    """T5 with its span-corruption loss (over the labelled decoder positions) as pieces."""
    if cfg.position_embedding_type != "relative":
        raise ValueError("T5 uses relative position bias: set model.position_embedding_type="
                         f"'relative' (got {cfg.position_embedding_type!r})")
    padded = padded_vocab_size(cfg, tp_world()[1])
    shared = {"shared": lambda: vocab_parallel_embedding(padded, cfg.hidden_size, precision)}
    drop = lambda x, module: F.dropout(x, cfg.hidden_dropout, module.training)  # noqa: E731

    def embed(module, state):
        state = {**state, "hidden": drop(module(state["input_ids"]), module)}
        if "decoder_input_ids" in state:
            state["decoder_hidden"] = drop(module(state["decoder_input_ids"]), module)
        return state

    def stack(name: str, decoder: bool):
        stream = "decoder_hidden" if decoder else "hidden"
        masks = ("decoder_attention_mask" if decoder else "attention_mask", "attention_mask")

        def layer(module, state):
            key = f"{name}_position_bias"
            if module.relative_position_bias is not None:
                length = state[stream].shape[1]
                local = module.relative_position_bias(length, length).permute(0, 2, 3, 1)
                state = {**state, key: GatherFromTensorParallel.apply(local.contiguous())}
            bias = ScatterToTensorParallel.apply(state[key]).permute(0, 3, 1, 2)
            memory = (state["hidden"], padding_mask(state.get(masks[1]))) if decoder else (None, None)
            return {**state, stream: module(state[stream], padding_mask(state.get(masks[0])), bias,
                                            *memory)}

        def close(norm, state):
            return {**{k: v for k, v in state.items() if k != f"{name}_position_bias"},
                    stream: drop(norm(state[stream]), norm)}

        layers = (cfg.num_decoder_layers or cfg.num_layers) if decoder else cfg.num_layers
        return ([Piece({f"{name}.layers.{i}": lambda i=i: _layer(cfg, precision, decoder, i)},
                       layer, layer=True) for i in range(layers)]
                + [Piece({f"{name}.final_layernorm": lambda: build_norm(cfg)}, close)])

    scale = cfg.hidden_size ** -0.5 if cfg.scale_tied_logits else 1.0
    # An untied head is a second vocabulary-parallel table: same slicing, padding and init as
    # the embedding (its padding rows stay zero and their logits are -inf).
    head = {"output_layer": lambda: TiedVocabParallelLogits(padded, cfg.vocab_size, bias=False)}
    if not cfg.tie_word_embeddings:
        head["lm_head"] = lambda: vocab_parallel_embedding(padded, cfg.hidden_size, precision)

    def loss(output_layer, *rest):
        *table, state = rest
        weight = table[0].weight if table else state["word_embeddings"]
        return labelled_metrics("lm", lambda h: output_layer(h * scale, weight),
                                state["decoder_hidden"], state["labels"])

    tied = [Piece(shared, lambda module, state: {**state, "word_embeddings": module.output_table()})]
    return ([Piece(shared, embed)] + stack("encoder", False) + stack("decoder", True)
            + (tied if cfg.tie_word_embeddings else []) + [Piece(head, loss)])


class T5ForConditionalGeneration(PiecewiseModel):
    """T5 with its LM head. ``forward(batch)`` returns the span-corruption loss and accuracy.

    ``shared`` is the vocabulary-parallel embedding of both stacks; the head reuses it (v1.0, output
    scaled by 1/sqrt(d_model) when ``scale_tied_logits``) or has its own ``lm_head`` table (v1.1).
    """

    def __init__(self, cfg: ModelConfig, precision: str = "fp32"):
        super().__init__(t5_pieces(cfg, precision), cfg)

    def encode(self, input_ids, attention_mask=None):
        """Encoder output [b, s, h]."""
        return self.run({"input_ids": input_ids, "attention_mask": attention_mask},
                        self.pieces[:1] + self.pieces_under("encoder."))["hidden"]

    def decode(self, decoder_input_ids, memory, attention_mask=None, decoder_attention_mask=None):
        """Decoder output [b, t, h] (before the head) attending to the encoder output ``memory``."""
        embedded = F.dropout(self.shared(decoder_input_ids), self.cfg.hidden_dropout, self.training)
        return self.run({"decoder_hidden": embedded, "hidden": memory,
                         "attention_mask": attention_mask,
                         "decoder_attention_mask": decoder_attention_mask},
                        self.pieces_under("decoder."))["decoder_hidden"]

    def head(self, hidden):
        """This TP rank's vocabulary slice of the logits (padding columns are -inf)."""
        table = self.shared if self.cfg.tie_word_embeddings else self.lm_head
        scale = self.cfg.hidden_size ** -0.5 if self.cfg.scale_tied_logits else 1.0
        return self.output_layer(hidden * scale, table.weight)

    @torch.no_grad()
    def logits(self, input_ids, attention_mask=None, decoder_input_ids=None,
               decoder_attention_mask=None):
        """Full-vocabulary logits [b, t, V] of every decoder position, as HF's model returns them."""
        memory = self.encode(input_ids, attention_mask)
        hidden = self.decode(decoder_input_ids, memory, attention_mask, decoder_attention_mask)
        return gather_vocab_logits(self.head(hidden), self.cfg.vocab_size)

    @torch.no_grad()
    def greedy_generate(self, input_ids: torch.Tensor, max_new_tokens: int,
                        eos_id: int | None = None, decoder_start_id: int = 0,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Up to ``max_new_tokens`` argmax decoder tokens [b, n] for the encoder inputs ``input_ids``
        [b, s] (the text ending in eos, as the span-corruption inputs do). The decoder starts from
        ``decoder_start_id``: T5's is the pad id, which ``data_prep``'s tokenizers put at 0.

        The encoder runs once; the decoder recomputes its whole prefix each step (relative
        positions: no length limit). Stops early once every row has produced ``eos_id`` (finished
        rows are filled with it). Collective over the TP group. Called by ``launch/generate.py``.
        """
        return encoder_decoder_greedy(self, input_ids, decoder_start_id, max_new_tokens, eos_id,
                                      attention_mask)


@torch.no_grad()
def t5_initialize(model: nn.Module, cfg) -> None:
    """``model.init_method="t5"``: T5's per-module initialisation scales (see the config field).

    The layout-independent initialisation has drawn every weight from N(0, init_std); multiplying by
    std / init_std gives N(0, std) and stays layout-independent (the fused qkv rows are scaled per
    q/k/v block, which every TP slice holds for its heads). Works on the model or its pipeline stages.
    """
    m = cfg.model
    if m.init_method == "normal":
        return
    if m.init_method != "t5":
        raise ValueError(f"model.init_method={m.init_method!r}; valid: 'normal', 't5'")
    if m.init_std <= 0:
        raise ValueError("model.init_method='t5' rescales the N(0, init_std) draws: init_std must be > 0")
    d, heads = m.hidden_size, m.num_attention_heads
    head_dim = m.kv_channels or d // heads

    def scale(param: torch.Tensor, std: float) -> None:
        param.mul_(std / m.init_std)

    for name, module in model.named_modules():
        if isinstance(module, SelfAttention):
            rows = module.linear_qkv.weight.view(module.heads_per_rank, 3, head_dim, -1)
            scale(rows[:, 0], (d * head_dim) ** -0.5)
            scale(rows[:, 1:], d ** -0.5)
            scale(module.linear_proj.weight, (heads * head_dim) ** -0.5)
        elif isinstance(module, CrossAttention):
            scale(module.linear_q.weight, (d * head_dim) ** -0.5)
            scale(module.linear_kv.weight, d ** -0.5)
            scale(module.linear_proj.weight, (heads * head_dim) ** -0.5)
        elif isinstance(module, (MLP, ExpertMLP)):
            for linear in (module.linear_fc1, module.linear_fc1_up):
                if linear is not None:
                    scale(linear.weight, d ** -0.5)
            # An expert's (or the shared experts') own width; the dense MLP's is split over TP.
            width = (module.linear_fc2.in_features if isinstance(module, ExpertMLP)
                     else m.ffn_hidden_size)
            scale(module.linear_fc2.weight, width ** -0.5)
        elif isinstance(module, RelativePositionBias):
            scale(module.weight, d ** -0.5)
        elif isinstance(module, VocabParallelEmbedding):
            # The untied head (v1.1) keeps logits O(1) at d_model^-1/2; HF's 1.0 would make them
            # O(sqrt(d_model)) (huggingface/transformers#26441).
            scale(module.weight, d ** -0.5 if name.split(".")[-1] == "lm_head" else 1.0)
