"""A plmscale checkpoint -> a Hugging Face folder that ``transformers`` loads with no other code:
``config.json`` (special-token ids set), ``model.safetensors``, ``generation_config.json`` where the
family generates, and the tokenizer (``tokenizer.model`` or ``tokenizer.json``, +
``tokenizer_config.json``).

A run on a Hugging Face ``tokenizer.json`` exports it as a fast tokenizer (``hf_fast_tokenizer``):
the same file (so the same ids as the shards) with a post-processor that lays a text out as the
family's samples, and the special tokens the run resolved by name.

For a sentencepiece run, the tokenizer is transformers' SentencePiece backend (a slow tokenizer)
on the run's own sentencepiece model, with ``split_special_tokens=True`` so that sentencepiece alone segments the
text, user-defined pieces such as ``[MASK]`` included: its ids are sentencepiece's. (The fast
``SpmConverter`` maps user-defined and byte pieces to ``<unk>``.) Its ``special_tokens_pattern``
lays a text out as the family's training samples do. A model type whose ``AutoTokenizer`` loads
only a fast tokenizer (``needs_fast_tokenizer``: Mixtral) gets instead a fast tokenizer on a
``tokenizer.json`` rebuilt from the sentencepiece model (``plmscale.export.fast_sentencepiece``),
with the same ids.

Which HF class, task, token layout and ids each family exports to is its ``Family.hf_export``
(an ``HFExport``, declared in the family's folder next to its state-dict mapping, ``hf.py``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.families import all_families, get_family


@dataclass(frozen=True)
class HFPart:
    """One HF model written by the export (ELECTRA writes two)."""

    model_class: str
    """``transformers`` class whose ``config.architectures`` entry makes the Auto classes load it."""
    subfolder: str = ""
    """Relative folder inside the export ("" = the export folder itself)."""
    hf_config: Optional[Callable[[ModelConfig], object]] = None
    """Config builder; None = the family's ``hf_config``."""
    to_hf_state_dict: Optional[Callable[[dict, ModelConfig], dict]] = None
    """State-dict mapping; None = the family's ``to_hf_state_dict``."""
    task: Optional[str] = None
    """The ``transformers.pipeline`` task the folder serves (None: no pipeline, e.g. ELECTRA's
    discriminator)."""
    extra_files: dict = field(default_factory=dict)
    """File name -> (full tensors, model config) -> tensors of a safetensors file written next to
    the model: weights the HF class has no place for (GLM's block-position table)."""
    load: Optional[Callable[[torch.nn.Module, dict], tuple[list, list]]] = None
    """(HF model, state) -> (missing, unexpected) keys, for a class whose ``load_state_dict`` does
    not take the state as it is (T5's tied aliases and untied head); None = ``load_state_dict``."""


@dataclass(frozen=True)
class HFExport:
    """How a family becomes Hugging Face files."""

    parts: tuple[HFPart, ...]
    special_tokens_pattern: str
    """How the tokenizer wraps a text, as the family's samples: "cls_sep" ([CLS] a [SEP]),
    "bos_eos" (<s> a </s>), "eos" (a </s>), "bos" (the tokenizer's bos before a)."""
    token_ids: Callable[[object, ModelConfig], dict] = lambda tokens, cfg: {"pad_token_id": tokens.pad}
    """(plmscale.data.SpecialTokens, model config) -> the config's special-token ids."""
    tokenizer_tokens: dict = field(default_factory=dict)
    """Overrides of the tokenizer's special-token strings (GPT: its bos is </s>, as in training)."""


def encoder_token_ids(tokens, cfg):
    """Special-token ids of an encoder family's config: pad, bos and eos."""
    return {"pad_token_id": tokens.pad, "bos_token_id": tokens.bos, "eos_token_id": tokens.eos}


def hf_export_spec(family: str) -> HFExport:
    """The family's ``HFExport``; raises ``ValueError`` naming the families that export."""
    spec = get_family(family).hf_export
    if spec is None:
        exporting = sorted(n for n, f in all_families().items() if f.hf_export is not None)
        raise ValueError(f"model.family {family!r} has no Hugging Face class to export to; "
                         f"families that export: {', '.join(exporting)}")
    return spec


def loaded_model(part: HFPart, config, state: dict):
    """The ``transformers`` model (eval mode) holding ``state``; every tensor must be used, and
    only buffers or tied copies that HF rebuilds itself may be left out."""
    import transformers
    model = getattr(transformers, part.model_class)(config).eval()
    missing, unexpected = (part.load or (lambda m, s: m.load_state_dict(s, strict=False)))(model, state)
    # Tied copies (HF lists them per its config, e.g. Switch's embed_tokens and lm_head) are rebuilt.
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    missing = [m for m in missing if not m.endswith(("position_ids", "token_type_ids")) and m not in tied]
    if missing or unexpected:
        raise RuntimeError(f"{part.model_class}: the exported tensors do not fit HF (missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]})")
    return model


def hf_tokenizer(tokenizer_model: Path, spec: HFExport, max_length: int):
    """transformers' SentencePiece backend on ``tokenizer_model`` with plmscale's special tokens."""
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    from plmscale.data.tokenizer import SENTENCEPIECE_NAMES
    names = {f"{role}_token": name for role, name in SENTENCEPIECE_NAMES.items()}
    names.update(unk_token="<unk>", **spec.tokenizer_tokens)
    tokenizer = SentencePieceBackend(vocab_file=str(tokenizer_model), split_special_tokens=True,
                                     special_tokens_pattern=spec.special_tokens_pattern,
                                     model_max_length=max_length,
                                     clean_up_tokenization_spaces=False, **names)
    # The base class reads the pattern but leaves it out of what save_pretrained writes.
    tokenizer.init_kwargs["special_tokens_pattern"] = spec.special_tokens_pattern
    return tokenizer


TEMPLATES = {"cls_sep": ("cls $A sep", "cls $A sep $B:1 sep:1"),
             "bos_eos": ("bos $A eos", "bos $A eos eos $B eos"), "eos": ("$A eos", "$A eos $B eos"),
             "bos": ("bos $A", "bos $A $B"), "none": ("$A", "$A $B")}
"""``HFExport.special_tokens_pattern`` -> the fast tokenizer's (single, pair) template, in roles."""


def needs_fast_tokenizer(model_type: str) -> bool:
    """Whether transformers' ``AutoTokenizer`` loads ``model_type`` only with its ``tokenizers``
    backend: for a model type registered to ``TokenizersBackend`` (or to ``MistralCommonBackend``,
    which falls back to it without Mistral's own files), ``AutoTokenizer.from_pretrained``
    (transformers 5.x) returns ``TokenizersBackend`` whatever class ``tokenizer_config.json`` names."""
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES
    return (TOKENIZER_MAPPING_NAMES.get(model_type) or "").removesuffix("Fast") in (
        "TokenizersBackend", "PythonBackend", "MistralCommonBackend", "PreTrainedTokenizer")


def hf_fast_tokenizer(tokenizer, spec: HFExport, tokens, max_length: int, **kwargs):
    """A fast tokenizer (``tokenizers`` backend) on ``tokenizer`` (a ``tokenizers.Tokenizer``: the
    run's ``tokenizer.json``, or its sentencepiece model rebuilt): its ids are the backend's (as
    the shards'), the special tokens are the roles ``tokens`` (SpecialTokens) resolved by name, and
    a template post-processor adds them as the family's samples do. ``kwargs`` go to
    ``PreTrainedTokenizerFast``."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    from plmscale.data.tokenizer import SENTENCEPIECE_NAMES
    role_ids = {role: getattr(tokens, role) for role in SENTENCEPIECE_NAMES
                if getattr(tokens, role) is not None}
    # A family's override names a sentencepiece piece (GPT's bos is "</s>"): here, that role's token.
    by_piece = {name: role for role, name in SENTENCEPIECE_NAMES.items()}
    role_ids.update({key[:-len("_token")]: role_ids[by_piece[piece]]
                     for key, piece in spec.tokenizer_tokens.items()})
    text = {role: tokenizer.id_to_token(i) for role, i in role_ids.items()}

    def spelled(template: str) -> str:  # "sep:1" -> "[SEP]:1" (a role, then its type id)
        words = [word.partition(":") for word in template.split()]
        return " ".join(text.get(role, role) + colon + type_id for role, colon, type_id in words)

    single, pair = map(spelled, TEMPLATES[spec.special_tokens_pattern])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair,
        special_tokens=sorted({(text[r], role_ids[r]) for r in text}, key=lambda t: t[1]))
    names = {f"{role}_token": token for role, token in text.items()}
    unk = getattr(tokenizer.model, "unk_token", None)  # WordPiece, BPE; Unigram has an id
    unk_id = json.loads(tokenizer.to_str())["model"].get("unk_id") if unk is None else None
    unk = tokenizer.id_to_token(unk_id) if unk_id is not None else unk
    if unk is not None and tokenizer.token_to_id(unk) is not None:
        names["unk_token"] = unk
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=max_length,
                                   clean_up_tokenization_spaces=False, **names, **kwargs)


def export_tokenizer(tokenizer_model: Path, spec: HFExport, tokens, model_type: str, max_length: int):
    """The HF tokenizer of a run's ``tokenizer_model`` (sentencepiece model or ``tokenizer.json``)
    that ``AutoTokenizer`` loads for ``model_type`` (see the module's docstring)."""
    from tokenizers import Tokenizer
    if str(tokenizer_model).endswith(".json"):
        return hf_fast_tokenizer(Tokenizer.from_file(str(tokenizer_model)), spec, tokens, max_length)
    if needs_fast_tokenizer(model_type):
        from plmscale.export.fast_sentencepiece import sentencepiece_fast_tokenizer
        # split_special_tokens: special tokens spelled in a text are the model's pieces, as in
        # the slow tokenizer (sentencepiece segments it alone).
        return hf_fast_tokenizer(sentencepiece_fast_tokenizer(tokenizer_model), spec, tokens,
                                 max_length, split_special_tokens=True)
    return hf_tokenizer(tokenizer_model, spec, max_length)


def write_hf_folder(cfg: ExperimentConfig, full: dict[str, torch.Tensor], tokenizer_model: Path,
                    out: str | Path) -> list[Path]:
    """Write the HF folder(s) of a trained model given as full tensors (``plmscale.export.shards``);
    returns the folders written (ELECTRA: the discriminator's and ``generator/``)."""
    from plmscale.data.tokenizer import SpecialTokens
    family = get_family(cfg.model.family)
    spec = hf_export_spec(cfg.model.family)
    tokens = SpecialTokens.from_model(tokenizer_model)
    out = Path(out)
    written = []
    for part in spec.parts:
        config = (part.hf_config or family.hf_config)(cfg.model)
        for name, value in spec.token_ids(tokens, cfg.model).items():
            setattr(config, name, value)
        config.architectures = [part.model_class]
        state = (part.to_hf_state_dict or family.to_hf_state_dict)(full, cfg.model)
        model = loaded_model(part, config, state)
        folder = out / part.subfolder
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
        for name, tensors in part.extra_files.items():
            from safetensors.torch import save_file
            save_file(tensors(full, cfg.model), str(folder / name))
        export_tokenizer(tokenizer_model, spec, tokens, config.model_type,
                         cfg.model.max_position_embeddings).save_pretrained(folder)
        written.append(folder)
    if not str(tokenizer_model).endswith(".json"):  # the fast tokenizer's file is tokenizer.json
        shutil.copyfile(tokenizer_model, out / "tokenizer.model")
    return written
