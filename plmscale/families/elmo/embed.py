"""Using a trained ELMo: export a checkpoint to a folder (``elmo.pt`` + ``elmo.json`` + the
tokenizer), embed text with the scalar mix of its layers, and held-out perplexity.

Scalar mix (Peters et al. 2018, eq. 1): ELMo_k = gamma * sum_j softmax(w)_j h_k,j over the token
layer (duplicated [x; x] to the LSTM width) and each biLSTM layer [forward; backward]; exported
with w = 0 (equal weights) and gamma = 1, the values a downstream task starts training from.

Command line: ``plmscale elmo export --checkpoint DIR --output FOLDER`` and ``plmscale elmo
perplexity --model FOLDER --data SHARDS [--windows N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path

import sentencepiece as spm
import torch
from torch import nn

from plmscale.config.schema import ModelConfig
from plmscale.families.elmo.model import ElmoBiLM, lm_targets
from plmscale.families.elmo.samples import character_table
from plmscale.objectives.masking import IGNORE_INDEX

WEIGHTS, CONFIG, TOKENIZER = "elmo.pt", "elmo.json", "tokenizer.model"


class ScalarMix(nn.Module):
    """gamma * sum_j softmax(w)_j layers[j]."""

    def __init__(self, layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        """layers [L, ...] -> the mix [...]."""
        w = torch.softmax(self.weights, dim=0).view(-1, *([1] * (layers.dim() - 1)))
        return self.gamma * (w * layers).sum(dim=0)


def export_elmo(checkpoint: str | Path, output: str | Path) -> Path:
    """Write ``output`` (the biLM's weights with a fresh scalar mix, its model config, the
    tokenizer) from a training checkpoint of any ZeRO stage."""
    from plmscale.export.shards import read_full_tensors, tokenizer_file
    cfg, full = read_full_tensors(checkpoint)
    if cfg.model.family != "elmo":
        raise ValueError(f"{checkpoint} holds a model.family={cfg.model.family!r} checkpoint; "
                         f"`plmscale elmo export` exports ELMo (others: `plmscale export`)")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model = dataclasses.replace(cfg.model, hidden_dropout=0.0, attention_dropout=0.0)
    mix = ScalarMix(model.num_layers + 1)
    torch.save({"bilm": full, "scalar_mix": mix.state_dict()}, output / WEIGHTS)
    (output / CONFIG).write_text(json.dumps(dataclasses.asdict(model), indent=2))
    shutil.copyfile(tokenizer_file(checkpoint), output / TOKENIZER)
    return output


class Elmo:
    """An exported ELMo: ``embed(texts)`` gives one [tokens, 2 * hidden] tensor per text (the
    scalar mix; ``layers`` gives the layers themselves)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not (folder / WEIGHTS).is_file():
            raise FileNotFoundError(f"{folder} holds no {WEIGHTS}: write one with `plmscale elmo "
                                    f"export --checkpoint DIR --output {folder}`")
        self.config = ModelConfig(**json.loads((folder / CONFIG).read_text()))
        saved = torch.load(folder / WEIGHTS, map_location="cpu")
        self.bilm = ElmoBiLM(self.config).eval()
        self.bilm.load_state_dict(saved["bilm"])
        self.scalar_mix = ScalarMix(self.config.num_layers + 1)
        self.scalar_mix.load_state_dict(saved["scalar_mix"])
        self.sp = spm.SentencePieceProcessor(model_file=str(folder / TOKENIZER))
        self.characters = torch.as_tensor(character_table(self.sp))

    def batch(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Right-padded model inputs of token id lists."""
        width = max(len(x) for x in ids)
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, x in enumerate(ids):
            input_ids[row, :len(x)] = torch.as_tensor(x)
            mask[row, :len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": mask,
                "char_ids": self.characters[input_ids]}

    @torch.no_grad()
    def layers(self, texts: list[str]) -> list[torch.Tensor]:
        """Per text: [num_layers + 1, tokens, 2 * hidden]."""
        ids = [self.sp.encode(t) for t in texts]
        layers = self.bilm.layers(self.batch(ids))
        return [layers[:, row, :len(x)] for row, x in enumerate(ids)]

    @torch.no_grad()
    def embed(self, texts: list[str]) -> list[torch.Tensor]:
        """Per text: the scalar mix of its layers, [tokens, 2 * hidden]."""
        return [self.scalar_mix(layers) for layers in self.layers(texts)]

    @torch.no_grad()
    def perplexity(self, shards: str | Path, seq_length: int = 64, windows: int = 64,
                   batch_size: int = 16) -> dict[str, float]:
        """Forward, backward and mean (exp of 0.5 (f + b) token loss) perplexity over the first
        ``windows`` windows of ``shards``' packed stream (seed 0's document order), in stream order (held-out text: shards
        encoded with this model's tokenizer from text it was not trained on)."""
        from plmscale.config.schema import DataConfig, ObjectiveConfig
        from plmscale.data.corpus import Corpus
        from plmscale.families.gpt.samples import GPTSamples
        corpus = Corpus(shards)
        stream = GPTSamples(corpus, corpus.tokens, DataConfig(seq_length=seq_length),
                            ObjectiveConfig(), seed=0)
        count = min(windows, stream.windows_per_epoch)
        totals = {"forward": 0.0, "backward": 0.0}
        tokens = {"forward": 0, "backward": 0}
        for start in range(0, count, batch_size):
            ids = [stream.window(0, j)[0][:seq_length].tolist()
                   for j in range(start, min(start + batch_size, count))]
            batch = self.batch(ids)
            state = self.bilm.run(batch, self.bilm.pieces[:-1])
            targets = dict(zip(("forward", "backward"),
                               lm_targets(batch["input_ids"], batch["attention_mask"])))
            for direction, target in targets.items():
                logits = self.bilm.softmax(state[f"{direction}_layers"][-1],
                                           state.get("word_embeddings"))
                labelled = target != IGNORE_INDEX
                totals[direction] += float(torch.nn.functional.cross_entropy(
                    logits[labelled], target[labelled], reduction="sum"))
                tokens[direction] += int(labelled.sum())
        loss = {d: totals[d] / tokens[d] for d in totals}
        return {"forward": math.exp(loss["forward"]), "backward": math.exp(loss["backward"]),
                "mean": math.exp(0.5 * (loss["forward"] + loss["backward"])),
                "tokens": tokens["forward"]}


def main(argv=None) -> int:
    """``plmscale elmo {export,perplexity} ...``."""
    parser = argparse.ArgumentParser(prog="plmscale elmo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="checkpoint -> folder with elmo.pt, elmo.json, tokenizer")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--output", required=True)
    px = sub.add_parser("perplexity", help="held-out perplexity of an exported ELMo")
    px.add_argument("--model", required=True, help="folder written by `plmscale elmo export`")
    px.add_argument("--data", required=True,
                    help="shards (`python -m data_prep encode` with the model's tokenizer)")
    px.add_argument("--seq-length", type=int, default=64)
    px.add_argument("--windows", type=int, default=64)
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            print(f"plmscale elmo export: wrote {export_elmo(args.checkpoint, args.output)}")
        else:
            found = Elmo(args.model).perplexity(args.data, args.seq_length, args.windows)
            print(f"held-out perplexity: {found['mean']:.2f} (forward {found['forward']:.2f}, "
                  f"backward {found['backward']:.2f}; {found['tokens']} tokens of {args.data})")
    except (ValueError, FileNotFoundError) as error:
        print(f"plmscale elmo {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
