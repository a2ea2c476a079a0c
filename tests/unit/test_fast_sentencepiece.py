"""The fast tokenizer.json rebuilt from a sentencepiece unigram model (plmscale.export.fast_sentencepiece)
gives sentencepiece's ids and text, and a Mixtral export's tokenizer loads with ``AutoTokenizer``
(transformers' fast backend for that model type) with those ids; a BPE model is refused by name."""

import json
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm

from data_prep.tokenizer import train_tokenizer
from plmscale.export.fast_sentencepiece import sentencepiece_fast_tokenizer

REPO = Path(__file__).resolve().parents[2]
EDGES = ["  two  spaces\tand a tab ", "ﬁ ligature ½ Ｆｕｌｌ width", "emoji 😀 and 漢字 (byte fallback)",
         "a[MASK]b [CLS] x", "The [MASK] door", "", " ", "line\nbreak"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A small unigram and a small BPE sentencepiece model of the bundled corpus."""
    out = tmp_path_factory.mktemp("spm")
    corpus = str(REPO / "corpora" / "gothic_novels.txt")
    for kind in ("unigram", "bpe"):
        train_tokenizer([corpus], str(out / f"{kind}.model"), 1200, model_type=kind,
                        sample_bytes_max=1 << 20, num_threads=1)
    return {kind: out / f"{kind}.model" for kind in ("unigram", "bpe")}


def paragraphs() -> list[str]:
    text = (REPO / "corpora" / "gothic_novels.txt").read_text(encoding="utf-8")
    return [p for p in text.split("\n") if p.strip() and "<|endoftext|>" not in p][:600] + EDGES


def test_rebuilt_unigram_model_encodes_and_decodes_as_sentencepiece(models):
    sp = spm.SentencePieceProcessor(model_file=str(models["unigram"]))
    fast = sentencepiece_fast_tokenizer(models["unigram"])
    encoded = decoded = 0
    for text in paragraphs():
        ids = sp.encode(text)
        encoded += fast.encode(text, add_special_tokens=False).ids != ids
        decoded += fast.decode(ids) != sp.decode(ids)
    assert (encoded, decoded) == (0, 0)


def test_mixtral_export_tokenizer_loads_with_auto_tokenizer(models, tmp_path):
    from transformers import AutoTokenizer, MixtralConfig

    from plmscale.config import load_config
    from plmscale.data.tokenizer import SpecialTokens
    from plmscale.export.hf import export_tokenizer, hf_export_spec, needs_fast_tokenizer
    assert needs_fast_tokenizer("mixtral") and not needs_fast_tokenizer("llama")
    cfg = load_config(None, ["model.preset=mixtral-tiny"])
    tokens = SpecialTokens.from_model(models["unigram"])
    MixtralConfig().save_pretrained(tmp_path)
    export_tokenizer(models["unigram"], hf_export_spec("mixtral"), tokens, "mixtral",
                     cfg.model.max_position_embeddings).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    sp = spm.SentencePieceProcessor(model_file=str(models["unigram"]))
    text = paragraphs()[3]
    # The family's samples: bos (GPT's bos is </s>) + the text's pieces.
    assert tok(text)["input_ids"] == [tokens.eos] + sp.encode(text)
    assert tok.unk_token == "<unk>" and tok.pad_token_id == tokens.pad
    assert tok.decode(sp.encode(text)) == sp.decode(sp.encode(text))
    # plmscale import takes the folder back with shards of its sentencepiece model, not others.
    from plmscale.export.hf_import import check_tokenizer
    from plmscale.export.inverse import HFImportError
    shutil.copyfile(models["unigram"], tmp_path / "tokenizer.model")
    for kind in ("unigram", "bpe"):
        data = tmp_path / f"{kind}_shards"
        data.mkdir()
        shutil.copyfile(models[kind], data / "tokenizer.model")
        (data / "manifest.json").write_text(json.dumps({"tokenizer": {"file": "tokenizer.model"}}))
        cfg.data.path = str(data)
        if kind == "unigram":
            check_tokenizer(tmp_path, cfg)
        else:
            with pytest.raises(HFImportError, match="is the model's tokenizer"):
                check_tokenizer(tmp_path, cfg)


def test_bpe_model_is_refused_naming_the_fix(models):
    with pytest.raises(ValueError, match="--model-type unigram"):
        sentencepiece_fast_tokenizer(models["bpe"])
