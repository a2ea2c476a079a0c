"""ELMo's biLM (Peters et al. 2018; the architecture of allenai/bilm-tf and allennlp's ``ElmoLstm``).

* Token encoder, "characters" (the original): 261 characters (256 bytes, begin/end of sentence,
  begin/end of word, padding) x 16 dims; Conv1d filters of widths 1..7 with 32, 32, 64, 128, 256,
  512, 1024 channels, max-pooled over the characters then ReLU; 2 highway layers (ReLU transform,
  transform-gate bias initialised to -2: mostly carry at the start); projection 2048 -> 512.
  "words" (bilm-tf's word mode): a V x 512 embedding of the sentencepiece ids, optionally shared
  with the softmax (``model.tie_word_embeddings``).
* Two LSTMP layers per direction (4096 cells, 512 projection, as ``LstmpCell``), the residual
  connection from layer 1 into layer 2 only; forward and backward stacks have separate parameters
  (a joint biLSTM would let each direction see the word it predicts); the token encoder and the
  softmax are shared by both directions.
* Loss = 0.5 * (forward LM loss + backward LM loss): position t predicts token t+1 (forward) and
  t-1 (backward).

Model fields: ``hidden_size`` = projection (512), ``ffn_hidden_size`` = cells (4096), ``num_layers``
= LSTM layers per direction, ``token_encoder``, ``char_cnn_filters``. Samples are fixed windows
starting from zero states (truncated backpropagation over windows; bilm-tf also carries the states
from one batch to the next, plmscale does not). The softmax is the full vocabulary (sentencepiece
vocabularies are small; bilm-tf's sampled softmax serves its 793k-word vocabulary).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.pieces import Piece, PiecewiseModel
from plmscale.objectives.masking import IGNORE_INDEX

CHARACTERS = 261  # bytes 0-255, then the five below
BOS_CHAR, EOS_CHAR, BOW_CHAR, EOW_CHAR, PAD_CHAR = range(256, 261)
MAX_CHARACTERS = 50  # per token, begin/end-of-word marks included (allennlp's limit)
CHAR_EMBEDDING = 16
ORIGINAL_FILTERS = "1:32,2:32,3:64,4:128,5:256,6:512,7:1024"
HIGHWAY_LAYERS = 2
CLIP = 3.0  # LSTMP cell and projection clip
FORGET_BIAS = 1.0
HIGHWAY_GATE_BIAS = -2.0


def parse_filters(text: str | None) -> list[tuple[int, int]]:
    """``model.char_cnn_filters`` "width:channels,..." (None = the original) -> [(width, channels)]."""
    text = text or ORIGINAL_FILTERS
    try:
        filters = [tuple(int(x) for x in item.split(":")) for item in text.split(",")]
    except ValueError:
        filters = []
    if not filters or any(len(f) != 2 or min(f) < 1 or f[0] > MAX_CHARACTERS for f in filters):
        raise ValueError(f"model.char_cnn_filters={text!r}: expected comma-separated width:channels "
                         f"pairs (widths 1..{MAX_CHARACTERS}), e.g. {ORIGINAL_FILTERS!r}")
    return filters


class Highway(nn.Module):
    """y = t * relu(W_h x) + (1 - t) * x, t = sigmoid(W_t x + b_t) (bilm-tf's highway); one Linear
    holds [W_h; W_t]."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.proj = nn.Linear(size, 2 * size)

    def forward(self, x):
        transform, gate = self.proj(x).split(self.size, dim=-1)
        gate = torch.sigmoid(gate)
        return gate * F.relu(transform) + (1 - gate) * x


class CharacterEncoder(nn.Module):
    """Character ids [b, s, MAX_CHARACTERS] -> token vectors [b, s, hidden_size]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        filters = parse_filters(cfg.char_cnn_filters)
        self.char_embeddings = nn.Embedding(CHARACTERS, CHAR_EMBEDDING)
        self.convolutions = nn.ModuleList(nn.Conv1d(CHAR_EMBEDDING, n, w) for w, n in filters)
        width = sum(n for _, n in filters)
        self.highways = nn.ModuleList(Highway(width) for _ in range(HIGHWAY_LAYERS))
        self.projection = nn.Linear(width, cfg.hidden_size)

    def forward(self, char_ids):
        b, s, c = char_ids.shape
        x = self.char_embeddings(char_ids.reshape(b * s, c)).transpose(1, 2)
        x = torch.cat([F.relu(conv(x).max(dim=-1).values) for conv in self.convolutions], dim=-1)
        for highway in self.highways:
            x = highway(x)
        return self.projection(x).reshape(b, s, -1)


class LstmpCell(nn.Module):
    """bilm-tf's LSTM with projection: one bias (on the recurrent input), no projection bias, cell
    and projected state clipped at +-3; gates in the order input, forget, cell, output. (torch's
    ``nn.LSTM(proj_size=...)`` has a second bias: 16,384 more parameters at 4096 cells.)"""

    def __init__(self, input_size: int, cells: int, projection: int):
        super().__init__()
        self.cells = cells
        self.input_linearity = nn.Linear(input_size, 4 * cells, bias=False)
        self.state_linearity = nn.Linear(projection, 4 * cells)
        self.state_projection = nn.Linear(cells, projection, bias=False)

    def forward(self, x):
        """x [b, s, input] -> projected states [b, s, projection], from zero states."""
        b, s, _ = x.shape
        inputs = self.input_linearity(x)  # every step's input part at once
        h = x.new_zeros(b, self.state_projection.out_features)
        c = x.new_zeros(b, self.cells)
        outputs = []
        for t in range(s):
            i, f, g, o = (inputs[:, t] + self.state_linearity(h)).chunk(4, dim=-1)
            c = (torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * c).clamp(-CLIP, CLIP)
            h = self.state_projection(torch.sigmoid(o) * torch.tanh(c)).clamp(-CLIP, CLIP)
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class LstmpStack(nn.Module):
    """``num_layers`` LSTMP layers of one direction; layer k > 0 adds its input (the residual from
    layer 1 into layer 2). Returns every layer's output."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(LstmpCell(cfg.hidden_size, cfg.ffn_hidden_size, cfg.hidden_size)
                                    for _ in range(cfg.num_layers))
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, x) -> list[torch.Tensor]:
        outputs = []
        for k, layer in enumerate(self.layers):
            y = self.dropout(layer(x))
            x = y + x if k > 0 else y
            outputs.append(x)
        return outputs


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of x [b, s, ...] within its length (padding stays at the end)."""
    s = x.shape[1]
    t = torch.arange(s, device=x.device)[None]
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class Softmax(nn.Module):
    """The output layer shared by both directions: its own [V, hidden] weight, or (tied) only a bias
    with the word embeddings as weight."""

    def __init__(self, cfg: ModelConfig, tied: bool):
        super().__init__()
        self.weight = None if tied else nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size))
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, hidden, embedding_weight=None):
        weight = self.weight if self.weight is not None else embedding_weight
        return F.linear(hidden, weight, self.bias)


def _tied(cfg: ModelConfig) -> bool:
    return cfg.token_encoder == "words" and cfg.tie_word_embeddings


def lm_targets(input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of the forward LM (token t+1) and the backward LM (token t-1) at every position;
    IGNORE_INDEX where that neighbour is padding or outside the window."""
    ids = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
    ignore = ids.new_full(ids[:, :1].shape, IGNORE_INDEX)
    forward = torch.cat([ids[:, 1:], ignore], dim=1).masked_fill(mask == 0, IGNORE_INDEX)
    backward = torch.cat([ignore, ids[:, :-1]], dim=1).masked_fill(mask == 0, IGNORE_INDEX)
    return forward, backward


def _lm_metrics(name: str, logits, targets) -> dict:
    labelled = targets != IGNORE_INDEX
    loss = F.cross_entropy(logits[labelled].float(), targets[labelled])
    accuracy = (logits[labelled].argmax(-1) == targets[labelled]).float().mean()
    return {f"{name}_loss": loss, f"{name}_accuracy": accuracy}


def elmo_pieces(cfg: ModelConfig) -> list[Piece]:
    """Token encoder, the two LSTMP stacks, the shared softmax with the 0.5 (forward + backward) loss."""
    def encoder():
        if cfg.token_encoder == "words":
            return nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        return CharacterEncoder(cfg)

    def encode(token_encoder, state):
        words = cfg.token_encoder == "words"
        tokens = token_encoder(state["input_ids"] if words else state["char_ids"])
        out = {**state, "tokens": F.dropout(tokens, cfg.hidden_dropout, token_encoder.training)}
        if _tied(cfg):
            out["word_embeddings"] = token_encoder.weight
        return out

    def bilm(forward_lstm, backward_lstm, state):
        lengths = state["attention_mask"].sum(dim=1)
        forward = forward_lstm(state["tokens"])
        backward = [reverse_padded(y, lengths)
                    for y in backward_lstm(reverse_padded(state["tokens"], lengths))]
        return {**state, "forward_layers": forward, "backward_layers": backward}

    def losses(softmax, state):
        forward_targets, backward_targets = lm_targets(state["input_ids"], state["attention_mask"])
        weight = state.get("word_embeddings")
        out = {**_lm_metrics("forward", softmax(state["forward_layers"][-1], weight),
                             forward_targets),
               **_lm_metrics("backward", softmax(state["backward_layers"][-1], weight),
                             backward_targets)}
        out["loss"] = 0.5 * (out["forward_loss"] + out["backward_loss"])
        return out

    return [Piece({"token_encoder": encoder}, encode),
            Piece({"forward_lstm": lambda: LstmpStack(cfg), "backward_lstm": lambda: LstmpStack(cfg)},
                  bilm),
            Piece({"softmax": lambda: Softmax(cfg, _tied(cfg))}, losses)]


class ElmoBiLM(PiecewiseModel):
    """ELMo's biLM. ``forward(batch)`` returns the losses and metrics of one batch;
    ``layers(batch)`` the three representation layers ELMo's scalar mix combines."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(elmo_pieces(cfg), cfg)

    def layers(self, batch: dict) -> torch.Tensor:
        """[3, b, s, 2 * hidden]: the token layer duplicated [x; x], then each LSTM layer's
        [forward; backward] output."""
        state = self.run(batch, self.pieces[:-1])
        tokens = state["tokens"]
        return torch.stack([torch.cat([tokens, tokens], dim=-1)]
                           + [torch.cat([f, b], dim=-1) for f, b in
                              zip(state["forward_layers"], state["backward_layers"])])


@torch.no_grad()
def initialize_elmo(model: nn.Module, cfg) -> None:
    """After the layout-independent initialisation: forget-gate biases +1 (bilm-tf) and highway
    transform-gate biases -2 (carry at the start)."""
    for module in model.modules():
        if isinstance(module, LstmpCell):
            module.state_linearity.bias[module.cells:2 * module.cells] = FORGET_BIAS
        elif isinstance(module, Highway):
            module.proj.bias[module.size:] = HIGHWAY_GATE_BIAS
