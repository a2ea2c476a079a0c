"""A sentencepiece unigram model as a ``tokenizers.Tokenizer`` that gives sentencepiece's ids, for
the Hugging Face model types whose ``AutoTokenizer`` loads only a fast tokenizer (``tokenizer.json``).

transformers 5.x resolves ``AutoTokenizer`` for some model types (e.g. ``mixtral``) to its
``TokenizersBackend`` whatever ``tokenizer_config.json`` names; without a ``tokenizer.json`` it
converts ``tokenizer.model`` itself, which fails for a unigram model saved with added tokens and
then falls back to a tiktoken reader. The export therefore writes the ``tokenizer.json`` built here.

The rebuild follows sentencepiece's normalizer spec: the precompiled NFKC character map, extra
whitespace removed, a dummy ``▁`` prefix, spaces escaped as ``▁``; the unigram scores of the
normal and user-defined pieces (user-defined ones score 0, above every normal piece, so they stay
whole); decoding undoes the escaping, fuses bytes and drops the dummy prefix. Control, unknown
and byte pieces take the lowest normal score: ``tokenizers`` puts an unknown character 10 below
the lowest score of the whole vocabulary, as sentencepiece does below its normal pieces, so
unknown characters still fall back to the same bytes. One difference remains: sentencepiece never
matches a control or byte piece in text, ``tokenizers`` can, so a text that spells one literally
(``</s>``, ``<0x41>``) encodes to that piece here and to its characters in sentencepiece.
"""

from __future__ import annotations

from pathlib import Path

NORMAL, USER_DEFINED = 1, 4
"""``ModelProto.SentencePiece.Type`` values (sentencepiece_model.proto) of the pieces matched in
text; the others are CONTROL, UNKNOWN, UNUSED and BYTE."""
UNIGRAM = 1
"""``TrainerSpec.ModelType.UNIGRAM``."""


def _model_proto(path: Path):
    from sentencepiece import sentencepiece_model_pb2
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(path).read_bytes())
    return proto


def sentencepiece_fast_tokenizer(path: str | Path):
    """The ``tokenizers.Tokenizer`` that segments and decodes text as the sentencepiece unigram
    model at ``path`` does (no special tokens added: the caller's post-processor adds them).
    Raises ``ValueError`` naming the fix for a model it cannot rebuild exactly."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers

    proto = _model_proto(path)
    spec, trainer = proto.normalizer_spec, proto.trainer_spec
    if trainer.model_type != UNIGRAM or trainer.treat_whitespace_as_suffix \
            or not spec.escape_whitespaces:
        raise ValueError(
            f"{path}: a fast tokenizer.json is rebuilt only from a unigram sentencepiece model with "
            f"prefix whitespace (this one: model_type {trainer.model_type}); train the tokenizer with "
            f"python -m data_prep train-tokenizer --model-type unigram")
    lowest = min(p.score for p in proto.pieces if p.type == NORMAL)
    vocab = [(p.piece, p.score if p.type in (NORMAL, USER_DEFINED) else lowest) for p in proto.pieces]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=trainer.unk_id, byte_fallback=True))
    steps = [normalizers.Precompiled(spec.precompiled_charsmap)] if spec.precompiled_charsmap else []
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Strip(left=True, right=True), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend("▁"))
    steps.append(normalizers.Replace(" ", "▁"))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if spec.add_dummy_prefix else []))
    return tokenizer
