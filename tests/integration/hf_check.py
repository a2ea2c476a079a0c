"""The Hugging Face side of the export round trip, run as a fresh process that imports no plmscale
code: load each exported folder with transformers' Auto classes, compare its logits with the ones
plmscale computed (``expected.pt``, through the suite's tolerance, tests/closeness.py), check the tokenizer against sentencepiece on the training
text (a sentencepiece run's), and run the family's pipeline. Prints one JSON object: family -> findings.

    python hf_check.py OUT CORPUS family [family ...]
"""

import dataclasses
import json
import sys
from pathlib import Path

import sentencepiece as spm
import torch
import transformers
from transformers import AutoConfig, AutoTokenizer, pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the suite's tolerance
from closeness import closeness  # noqa: E402

AUTO = {"ForPreTraining": transformers.AutoModelForPreTraining,
        "ForMaskedLM": transformers.AutoModelForMaskedLM,
        "ForConditionalGeneration": transformers.AutoModelForSeq2SeqLM,
        "LMHeadModel": transformers.AutoModelForCausalLM,
        "ForCausalLM": transformers.AutoModelForCausalLM}


def auto_model(folder: Path):
    architecture = AutoConfig.from_pretrained(folder).architectures[0]
    auto = next(cls for suffix, cls in AUTO.items() if architecture.endswith(suffix))
    return auto.from_pretrained(folder).eval()


def tokenizer_findings(folder: Path, paragraphs: list[str]) -> dict:
    tok = AutoTokenizer.from_pretrained(folder)
    if not (folder / "tokenizer.model").is_file():  # a tokenizer.json run: checked against its
        return {"tokenizer_class": type(tok).__name__}  # shards by the test (test_hf_tokenizer_run)
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    encode_mismatch = decode_mismatch = byte_paragraphs = 0
    for text in paragraphs:
        ids = sp.encode(text)
        encode_mismatch += tok(text, add_special_tokens=False)["input_ids"] != ids
        if any(sp.is_byte(i) for i in ids):
            byte_paragraphs += 1  # the SentencePiece backend shows byte pieces as <0x..> text
            continue
        decode_mismatch += tok.decode(ids) != sp.decode(ids)
    sample = sp.encode(paragraphs[0])
    return {"tokenizer_class": type(tok).__name__, "paragraphs": len(paragraphs),
            "encode_mismatch": encode_mismatch, "decode_mismatch": decode_mismatch,
            "byte_paragraphs": byte_paragraphs,
            "with_special": tok(paragraphs[0])["input_ids"], "plain": sample,
            "mask_id": tok.convert_tokens_to_ids("[MASK]"),
            "masked_ids": tok("The [MASK] door", add_special_tokens=False)["input_ids"],
            "sp_masked_ids": sp.encode("The [MASK] door")}


def with_block_positions(model, folder: Path, inputs: dict) -> dict:
    """GLM through GPT-2: the block-position table (written next to the model) added to the word
    embeddings, passed as ``inputs_embeds``."""
    if "block_position_ids" not in inputs:
        return inputs
    from safetensors.torch import load_file
    table = load_file(folder / "block_position_embeddings.safetensors")["weight"]
    inputs = dict(inputs)
    embeds = model.transformer.wte(inputs.pop("input_ids")) + table[inputs.pop("block_position_ids")]
    return {**inputs, "inputs_embeds": embeds}


def glm_fill(model, folder: Path, part_a: torch.Tensor, start: int, steps: int) -> list[int]:
    """GLM's greedy blank filling with HF GPT-2: Part A, then [START] and the tokens so far at the
    blank's position (the last of Part A), block positions 1, 2, ...; float 4-D mask."""
    n, written = part_a.shape[1], []
    for k in range(1, steps + 1):
        ids = torch.cat([part_a, torch.tensor([[start] + written])], 1)
        s = ids.shape[1]
        positions = torch.tensor([list(range(n)) + [n - 1] * k])
        blocks = torch.tensor([[0] * n + list(range(1, k + 1))])
        index = torch.arange(s)
        hidden = ~((index[None, :] < n) | (index[None, :] <= index[:, None]))
        mask = torch.zeros(1, 1, s, s).masked_fill(hidden, torch.finfo(torch.float32).min)
        inputs = with_block_positions(model, folder, {"input_ids": ids, "block_position_ids": blocks,
                                                      "position_ids": positions,
                                                      "attention_mask": mask})
        written.append(int(model(**inputs).logits[0, -1].argmax()))
    return written


def check(out: Path, family: str, paragraphs: list[str]) -> dict:
    expected = torch.load(out / family / "expected.pt")
    hf_root = out / family / "hf"
    found = {"logits": {}}
    with torch.no_grad():
        for folder, name, tensor in expected["outputs"]:
            model = auto_model(hf_root / folder)
            outputs = model(**with_block_positions(model, hf_root / folder, expected["inputs"]))
            key = f"{folder or '.'}:{name}"
            found["logits"][key] = dataclasses.asdict(closeness(getattr(outputs, name), tensor, key))
    found["config"] = {k: getattr(AutoConfig.from_pretrained(hf_root), k, None)
                       for k in ("pad_token_id", "bos_token_id", "eos_token_id",
                                 "decoder_start_token_id")}
    found["files"] = sorted(p.name for p in hf_root.iterdir())
    found["tokenizer"] = tokenizer_findings(hf_root, paragraphs)
    if family == "glm":  # blank filling, token by token, against plmscale's fill_blank
        fill = expected["fill"]
        with torch.no_grad():
            written = glm_fill(auto_model(hf_root), hf_root, fill["part_a"], fill["start"],
                               len(fill["tokens"]))
        found["pipeline"] = {"hf": written, "plmscale": fill["tokens"]}
    elif family in ("bert", "roberta", "albert", "distilbert", "electra", "ernie", "unilm", "mpnet"):
        folder = hf_root / ("generator" if family == "electra" else "")
        fill = pipeline("fill-mask", model=str(folder), tokenizer=str(folder))
        found["pipeline"] = [r["token"] for r in
                             fill(f"The castle was {fill.tokenizer.mask_token} and dark.")]
    elif family in ("gpt", "llama", "mixtral", "qwen2_moe"):
        generate = pipeline("text-generation", model=str(hf_root), tokenizer=str(hf_root))
        result = generate("The castle", max_new_tokens=8, do_sample=False)
        found["pipeline"] = result[0]["generated_text"]
    else:  # transformers 5 has no text2text pipeline: the Seq2Seq generate it ran on
        tok = AutoTokenizer.from_pretrained(hf_root)
        model = auto_model(hf_root)
        ids = model.generate(**tok("The castle was dark.", return_tensors="pt"), max_new_tokens=8,
                             do_sample=False)
        found["pipeline"] = tok.decode(ids[0], skip_special_tokens=True)
    return found


def main() -> None:
    out, corpus, families = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    text = corpus.read_text(encoding="utf-8")
    paragraphs = [p for p in text.split("\n") if p.strip() and "<|endoftext|>" not in p][:2000]
    print(json.dumps({family: check(out, family, paragraphs) for family in families}))


if __name__ == "__main__":
    main()
