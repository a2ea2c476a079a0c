"""Masking strategies over many draws on real text (English demo shards, Chinese shards segmented by
jieba, both through the real ``data_prep`` command line): 15% budgets in tokens, words / jieba words
never split, ALBERT's n-gram lengths proportional to 1/n, SpanBERT's span lengths, gazetteer phrases
and entities masked whole (each strategy from its own span kind), word flags and span labels aligned
with the tokens through packing and truncation, and SpanBERT's span boundary objective head."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from data_prep.shards import Document
from plmscale.config import DataConfig, ObjectiveConfig
from plmscale.data import Corpus
from plmscale.families.bert.samples import BertSamples
from plmscale.objectives import IGNORE_INDEX, select_positions
from plmscale.objectives.masking_strategies import (label_spans, ngram_length_distribution,
                                                    span_length_distribution, words)
from plmscale.objectives.span_boundary import SpanBoundaryHead, span_boundary_loss

REPO = Path(__file__).resolve().parents[2]
ZH_CORPUS = REPO.parent / "shared" / "corpora" / "zh_small.txt"
# Entities and phrases overlap in places ("said Manfred" holds "Manfred", "中国人" holds "中国").
EN_ENTITIES = ["Manfred", "Theodore", "Matilda", "Hippolita", "Isabella", "Otranto", "Jerome",
               "Frederic", "Bianca", "Sir Philip", "Sir Condy", "Lord Lovel", "Lord Clifford",
               "Castle Rackrent", "Lady Isabella", "Father Oswald", "Project Gutenberg"]
EN_PHRASES = ["said Manfred", "Castle of Otranto", "the Lady Isabella", "the Prince", "the Princess",
              "the castle", "the Friar", "the Marquis", "my Lord", "My Lord", "my lord", "his honour",
              "the door", "at the same time", "as soon as", "in the morning", "said he",
              "the young man", "at length", "at last"]
ZH_ENTITIES = ["阿Q", "中国", "北京", "上海", "俄国", "鲁迅", "未庄", "鲁镇", "赵太爷", "赵七爷", "孔乙己",
               "闰土", "七斤", "九斤老太", "老栓", "小栓", "单四嫂子", "方玄绰", "陈士成", "宝儿", "六斤",
               "王九妈"]
ZH_PHRASES = ["中国人", "鲁迅先生", "先生", "革命", "我们", "没有", "自己", "什么", "知道", "他们", "一个",
              "这样", "因为", "所以", "可是", "然而"]
SEP = "<|endoftext|>"


def _encode(out: Path, text_file: Path, tokenizer: Path, phrases: list[str], entities: list[str],
            language: str):
    (out / "phrases.txt").write_text("\n".join(phrases) + "\n", encoding="utf-8")
    (out / "entities.txt").write_text("\n".join(entities) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "data_prep", "encode", "--input", str(text_file),
                    "--doc-separator", SEP, "--tokenizer", str(tokenizer), "--output",
                    str(out / "shards"), "--workers", "2", "--language", language,
                    "--phrase-gazetteer", str(out / "phrases.txt"),
                    "--entity-gazetteer", str(out / "entities.txt")], check=True, capture_output=True)
    return out / "shards"


@pytest.fixture(scope="module")
def en_gazetteer_shards(demo_shards, tmp_path_factory):
    """The demo corpus encoded again with a phrase and an entity gazetteer (spans per document)."""
    out = tmp_path_factory.mktemp("en_gazetteer")
    return _encode(out, REPO / "corpora" / "gothic_novels.txt",
                   demo_shards / "tokenizer.model", EN_PHRASES, EN_ENTITIES, "en")


@pytest.fixture(scope="module")
def zh_shards(tmp_path_factory):
    """40 Lu Xun documents: a tokenizer trained on them, encoded with ``--language zh`` (jieba
    words) and phrase and entity gazetteers."""
    out = tmp_path_factory.mktemp("zh_data")
    docs = ZH_CORPUS.read_text(encoding="utf-8").rstrip("\n").split(f"\n{SEP}\n")[:40]
    text = out / "zh.txt"
    text.write_text(f"\n{SEP}\n".join(docs) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "data_prep", "train-tokenizer", "--input", str(text),
                    "--doc-separator", SEP, "--output", str(out / "zh.model"), "--vocab-size",
                    "5000"], check=True, capture_output=True)
    return _encode(out, text, out / "zh.model", ZH_PHRASES, ZH_ENTITIES, "zh")


class Recording(BertSamples):
    """BertSamples that also keeps what its masking step saw (ids, word flags, span labels, the
    selection). A subclass hook: the samples it returns are BertSamples' own."""

    def mask(self, ids, eligible, rng, strategy="token", word_starts=None, span_labels=None):
        out = super().mask(ids, eligible, rng, strategy, word_starts, span_labels)
        self.seen = {"ids": ids, "eligible": eligible, "word_starts": word_starts,
                     "span_labels": span_labels, "selection": out[2], "strategy": strategy}
        return out


def _builder(shards, masking, seed=3, **objective):
    corpus = Corpus(shards)
    return Recording(corpus, corpus.tokens, DataConfig(seq_length=128),
                     ObjectiveConfig(masking=masking, **objective), seed=seed)


def _draw(samples, index):
    s = samples(index)
    seen = samples.seen
    n = int(s["attention_mask"].sum())
    chosen = s["mlm_labels"][:n] != IGNORE_INDEX
    original = np.where(chosen, s["mlm_labels"][:n], s["input_ids"][:n])
    assert np.array_equal(original, seen["ids"]), "masking saw other tokens than the sample holds"
    return s, seen, chosen


def _word_ranges(eligible, word_starts):
    """Words by the definition (written out, independent of the module's vectorised version)."""
    ranges, start = [], None
    for i in range(len(eligible)):
        begins = eligible[i] and (word_starts[i] or i == 0 or not eligible[i - 1])
        if start is not None and (begins or not eligible[i]):
            ranges.append((start, i))
            start = None
        if begins:
            start = i
    if start is not None:
        ranges.append((start, len(eligible)))
    return ranges


def _span_ranges(eligible, labels):
    """Maximal runs of one span label on eligible tokens."""
    ranges, i, n = [], 0, len(labels)
    while i < n:
        if eligible[i] and labels[i] >= 0:
            j = i
            while j < n and eligible[j] and labels[j] == labels[i]:
                j += 1
            ranges.append((i, j))
            i = j
        else:
            i += 1
    return ranges


def _budget(samples, draws):
    """Selected / eligible tokens over ``draws`` samples, counted from the samples themselves."""
    special = samples.tokens.special_ids
    selected = eligible = 0
    for index in range(draws):
        s = samples(index)
        real = s["attention_mask"].astype(bool)
        chosen = s["mlm_labels"] != IGNORE_INDEX
        original = np.where(chosen, s["mlm_labels"], s["input_ids"])
        is_special = np.isin(original, special)
        assert not (chosen & (is_special | ~real)).any(), "a special token or padding was selected"
        eligible += int((real & ~is_special).sum())
        selected += int(chosen.sum())
    return selected / eligible


# -- budgets -----------------------------------------------------------------------------------
@pytest.mark.parametrize("masking", ["whole_word", "ngram", "span", "phrase", "entity"])
def test_budget_is_15_percent_of_eligible_tokens(demo_shards, en_gazetteer_shards, masking):
    shards = en_gazetteer_shards if masking in ("phrase", "entity") else demo_shards
    assert _budget(_builder(shards, masking), 1500) == pytest.approx(0.15, abs=0.005)


def test_chinese_budgets(zh_shards):
    for masking in ("whole_word", "span", "phrase"):
        assert _budget(_builder(zh_shards, masking), 800) == pytest.approx(0.15, abs=0.005), masking


def test_corruption_is_80_10_10_on_whole_words(demo_shards):
    samples = _builder(demo_shards, "whole_word")
    t = samples.tokens
    masked = kept = total = 0
    for index in range(800):
        s = samples(index)
        chosen = s["mlm_labels"] != IGNORE_INDEX
        inputs, labels = s["input_ids"][chosen], s["mlm_labels"][chosen]
        masked += int((inputs == t.mask).sum())
        kept += int((inputs == labels).sum())
        total += int(chosen.sum())
    assert masked / total == pytest.approx(0.8, abs=0.02)
    assert kept / total == pytest.approx(0.1, abs=0.02)


# -- words kept whole --------------------------------------------------------------------------
def _check_whole_words(samples, draws, language):
    sp = spm.SentencePieceProcessor(model_file=str(samples.corpus.shards.tokenizer_path))
    multi_token_words = ws_checked = 0
    for index in range(draws):
        s, seen, chosen = _draw(samples, index)
        eligible, flags = seen["eligible"], seen["word_starts"]
        for a, b in _word_ranges(eligible, flags):
            count = int(chosen[a:b].sum())
            assert count in (0, b - a), f"sample {index}: word [{a}, {b}) split ({count} of {b - a})"
            multi_token_words += int(count > 1)
        assert not chosen[~eligible].any()
        if language == "en":
            # Alignment: a "▁word" piece always starts a word (unless after a bare "▁").
            pieces = [sp.id_to_piece(int(i)) for i in seen["ids"]]
            for i, piece in enumerate(pieces):
                if eligible[i] and piece.startswith("\u2581") and len(piece) > 1 \
                        and (i == 0 or pieces[i - 1] != "\u2581"):
                    assert flags[i], f"sample {index}: {piece!r} at {i} not flagged as a word start"
                    ws_checked += 1
    return multi_token_words, ws_checked


def test_whole_word_masking_never_splits_a_word_english(demo_shards):
    multi, checked = _check_whole_words(_builder(demo_shards, "whole_word"), 600, "en")
    assert multi > 300 and checked > 30000  # multi-token words do get masked, as units


def test_chinese_segmenter_words_kept_whole(zh_shards):
    samples = _builder(zh_shards, "whole_word")
    multi, _ = _check_whole_words(samples, 600, "zh")
    assert multi > 300
    # The words are jieba's, not characters: many Han tokens continue a word (with --language en
    # every Han token would start one).
    doc = samples.corpus.document(0)
    sp = spm.SentencePieceProcessor(model_file=str(samples.corpus.shards.tokenizer_path))
    han = np.array([any("\u4e00" <= ch <= "\u9fff" for ch in sp.id_to_piece(int(i)))
                    for i in doc.token_ids])
    assert (doc.word_starts[han] == 0).mean() > 0.15


def test_word_flags_and_spans_stay_aligned_through_packing_and_truncation(en_gazetteer_shards,
                                                                         zh_shards):
    """Find each sample's segments in the corpus and compare the flags masking saw with the
    document's own word starts and the spans of the strategy's kind (phrase spans for "phrase",
    entity spans for "entity"), which differ from the other kind's in many segments."""
    other_kind = {"phrase": "entity", "entity": "phrase"}
    for shards, masking in ((en_gazetteer_shards, "phrase"), (zh_shards, "entity")):
        samples = _builder(shards, masking)
        corpus = samples.corpus
        docs = [corpus.document(i) for i in range(len(corpus))]
        raw = [d.token_ids.astype(np.int32).tobytes() for d in docs]
        located = differs = 0
        for index in range(150):
            _, seen, _ = _draw(samples, index)
            ids, eligible = seen["ids"], seen["eligible"]
            for a, b in _runs(eligible):
                needle = ids[a:b].astype(np.int32).tobytes()
                hits = [(d, r.find(needle)) for d, r in enumerate(raw)]
                hits = [(d, off // 4) for d, off in hits if off >= 0 and off % 4 == 0]
                if len(hits) != 1:
                    continue  # short or repeated segment: ambiguous position
                d, off = hits[0]
                doc = docs[d]
                assert np.array_equal(seen["word_starts"][a:b],
                                      doc.word_starts[off:off + b - a].astype(bool))
                own, other = (_in_spans(doc, kind, off, b - a) for kind in (masking, other_kind[masking]))
                assert np.array_equal(seen["span_labels"][a:b] >= 0, own)
                located += 1
                differs += int(not np.array_equal(own, other))
        assert located > 150 and differs > 20, (located, differs)


def _in_spans(doc, kind: str, offset: int, length: int) -> np.ndarray:
    """Whether each of the tokens [offset, offset + length) of ``doc`` lies in a ``kind`` span."""
    spans = getattr(doc, f"{kind}_spans")
    return label_spans(len(doc.token_ids), spans)[offset:offset + length] >= 0


def _runs(eligible):
    return [(a, b) for a, b in _span_ranges(eligible, np.where(eligible, 0, -1))]


# -- n-grams and spans -------------------------------------------------------------------------
def _unit_lengths(samples, draws):
    lengths = []
    for index in range(draws):
        _, seen, chosen = _draw(samples, index)
        selection = seen["selection"]
        starts = {a for a, _ in _word_ranges(seen["eligible"], seen["word_starts"])}
        for (a, b), n_words in zip(selection.units, selection.unit_words):
            assert chosen[a:b].all()
            assert a in starts and (b in starts or b == len(chosen) or not seen["eligible"][b]), \
                "a unit does not start and end on word boundaries"
            assert sum(1 for i in range(a, b) if i in starts) == n_words
            assert seen["eligible"][a:b].all(), "a unit crosses a special token"
        lengths.extend(int(n) for n in selection.unit_words)
    return np.array(lengths)


def test_ngram_lengths_are_proportional_to_one_over_n(demo_shards):
    lengths = _unit_lengths(_builder(demo_shards, "ngram", max_ngram=3), 1200)
    observed = np.bincount(lengths, minlength=4)[1:] / lengths.size
    expected = np.array([1, 1 / 2, 1 / 3]) / (1 + 1 / 2 + 1 / 3)
    assert lengths.size > 10000
    np.testing.assert_allclose(observed, expected, atol=0.015)
    np.testing.assert_allclose(ngram_length_distribution(3), expected)


def test_span_lengths_follow_clipped_geometric(demo_shards):
    p, clip = 0.2, 10
    # SpanBERT: l ~ Geo(p) on 1, 2, ... clipped at 10 (truncated and renormalised; paper: mean 3.8).
    weights = [p * (1 - p) ** (length - 1) for length in range(1, clip + 1)]
    mean = sum(length * w for length, w in zip(range(1, clip + 1), weights)) / sum(weights)
    assert mean == pytest.approx(3.8, abs=0.01)
    lengths = _unit_lengths(_builder(demo_shards, "span"), 1500)
    assert lengths.size > 5000 and lengths.max() <= clip
    assert lengths.mean() == pytest.approx(mean, rel=0.05)
    np.testing.assert_allclose(np.bincount(lengths, minlength=clip + 1)[1:] / lengths.size,
                               span_length_distribution(p, clip), atol=0.015)


# -- phrases and entities ----------------------------------------------------------------------
@pytest.mark.parametrize("language", ["en", "zh"])
def test_phrases_and_entities_are_masked_whole(en_gazetteer_shards, zh_shards, language):
    shards = en_gazetteer_shards if language == "en" else zh_shards
    for masking in ("phrase", "entity"):
        samples = _builder(shards, masking)
        spans_masked = spans_seen = 0
        for index in range(500):
            _, seen, chosen = _draw(samples, index)
            eligible = seen["eligible"]
            for a, b in _span_ranges(eligible, seen["span_labels"]):
                count = int(chosen[a:b].sum())
                assert count in (0, b - a), f"{masking} {index}: span [{a}, {b}) split"
                spans_seen += 1
                spans_masked += int(count == b - a)
            for a, b in _word_ranges(eligible, seen["word_starts"]):
                assert int(chosen[a:b].sum()) in (0, b - a), "a filling word was split"
        # Spans go first: far more of them are masked than the 15% a word would get.
        assert spans_seen > 200 and spans_masked / spans_seen > 0.5, (spans_masked, spans_seen)


class _OneDocument:
    """The part of :class:`Corpus` that BertSamples uses, over one given document."""

    def __init__(self, doc: Document, tokens):
        self.doc, self.tokens = doc, tokens

    def document(self, index: int) -> Document:
        return self.doc

    def sample_document(self, rng, exclude=None) -> int:
        return 0


def test_phrase_masks_phrase_spans_and_entity_masks_entity_spans(demo_shards):
    """One sentence of one-token words with different phrase and entity spans (one entity inside a
    phrase): a unit longer than a token can only be a span of the strategy's own kind, own spans are
    masked whole, and the other kind's spans are ordinary words."""
    tokens = Corpus(demo_shards).tokens
    n = 100
    phrases = [(10, 14), (40, 43), (70, 75)]
    entities = [(10, 12), (20, 23), (50, 52), (80, 84)]  # [10, 12) lies inside the phrase [10, 14)
    doc = Document(token_ids=np.random.default_rng(0).choice(tokens.normal_ids, n).astype(np.int32),
                   sentence_starts=np.zeros(1, dtype=np.int32), word_starts=np.ones(n, dtype=np.uint8),
                   phrase_spans=np.array(phrases, dtype=np.int32),
                   entity_spans=np.array(entities, dtype=np.int32))
    for masking, own, other in (("phrase", phrases, entities), ("entity", entities, phrases)):
        samples = Recording(_OneDocument(doc, tokens), tokens, DataConfig(seq_length=128),
                            ObjectiveConfig(masking=masking, next_sentence_prediction=False), seed=5)
        masked_whole = set()
        words_in_other_only = 0
        for index in range(300):
            _, seen, chosen = _draw(samples, index)
            # [CLS] + the document + [SEP]: document offset = position - 1.
            units = [(int(a) - 1, int(b) - 1) for a, b in seen["selection"].units]
            assert {u for u in units if u[1] - u[0] > 1} <= set(own), (masking, units)
            for a, b in own:
                count = int(chosen[a + 1:b + 1].sum())
                assert count in (0, b - a), f"{masking} {index}: span [{a}, {b}) split"
                if count:
                    masked_whole.add((a, b))
                # Words inside an own span are never units of their own.
                assert not any(a <= u < b for u, e in units if e - u == 1)
            words_in_other_only += sum(1 for u, e in units if e - u == 1 and
                                       any(a <= u < b for a, b in other) and
                                       not any(a <= u < b for a, b in own))
        assert masked_whole == set(own), masking
        assert words_in_other_only > 30, masking  # the other kind's spans do not block their words


# -- selectors on synthetic input -------------------------------------------------------------
def test_selectors_respect_special_tokens_and_word_boundaries():
    rng = np.random.default_rng(0)
    n = 60
    eligible = np.ones(n, dtype=bool)
    eligible[[0, 25, 59]] = False  # [CLS] ... [SEP] ... [SEP]
    word_starts = (np.arange(n) % 3 == 0)  # 3-token words, one crossing the first [SEP]
    labels = label_spans(n, np.array([[4, 11], [30, 33]]))
    w = words(eligible, word_starts)
    assert list(zip(w.starts, w.ends))[:3] == [(1, 3), (3, 6), (6, 9)]
    assert (24, 25) in zip(w.starts, w.ends) and (26, 27) in zip(w.starts, w.ends)
    for strategy in ("token", "whole_word", "ngram", "span", "phrase", "entity"):
        for _ in range(200):
            sel = select_positions(strategy, eligible, rng, word_starts=word_starts,
                                   span_labels=labels)
            assert eligible[sel.positions].all()
            assert np.array_equal(sel.positions, np.unique(sel.positions))
            if strategy in ("phrase", "entity"):
                # [4, 11) widened to words: [3, 12).
                chosen = np.zeros(n, dtype=bool)
                chosen[sel.positions] = True
                assert chosen[3:12].all() or not chosen[3:12].any()
    with pytest.raises(ValueError, match="unknown masking strategy"):
        select_positions("bogus", eligible, rng, word_starts=word_starts)
    with pytest.raises(ValueError, match="needs the word_starts"):
        select_positions("span", eligible, rng)
    with pytest.raises(ValueError, match="unknown masking strategy"):
        _ = BertSamples(None, None, DataConfig(), ObjectiveConfig(masking="wwm"), seed=0)


def test_strategies_are_deterministic_per_index_and_dynamic(demo_shards):
    samples = _builder(demo_shards, "span")
    a, b = samples(21), samples(21)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    masks = {tuple(np.flatnonzero(samples(i)["mlm_labels"] != IGNORE_INDEX)) for i in range(40)}
    assert len(masks) > 36


# -- span boundary objective -------------------------------------------------------------------
def test_span_boundary_arrays_match_the_masked_spans(demo_shards):
    samples = _builder(demo_shards, "span", span_boundary_objective=True)
    for index in range(300):
        s, seen, _ = _draw(samples, index)
        labels = s["mlm_labels"]
        inside = s["sbo_position"] >= 0
        assert np.array_equal(inside, labels != IGNORE_INDEX)
        for (a, b) in seen["selection"].units:
            assert (s["sbo_left"][a:b] == a - 1).all() and (s["sbo_right"][a:b] == b).all()
            assert np.array_equal(s["sbo_position"][a:b], np.arange(b - a))
        assert (s["attention_mask"][s["sbo_right"][inside]] == 1).all()
        assert (s["sbo_left"][inside] >= 0).all()


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread avoids oversubscription stalls on shared CI machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_span_boundary_head_on_tensors(one_thread):
    torch.manual_seed(0)
    b, s, h, vocab = 2, 12, 16, 50
    head = SpanBoundaryHead(h, max_positions=8, position_embedding_size=6)
    hidden = torch.randn(b, s, h, requires_grad=True)
    left = torch.full((b, s), -1)
    right = torch.full((b, s), -1)
    position = torch.full((b, s), -1)
    spans = [(0, 3, 6), (1, 2, 4), (1, 7, 11)]  # (row, start, end)
    for row, a, e in spans:
        left[row, a:e], right[row, a:e] = a - 1, e
        position[row, a:e] = torch.arange(e - a)
    labels = torch.full((b, s), IGNORE_INDEX)
    labels[position >= 0] = torch.randint(0, vocab, (int((position >= 0).sum()),))

    reps, index = head(hidden, left, right, position)
    # The same function written per token.
    expected = []
    for row, a, e in spans:
        for i in range(a, e):
            x = torch.cat([hidden[row, a - 1], hidden[row, e],
                           head.position_embeddings.weight[i - a]])
            x = head.LayerNorm1(torch.nn.functional.gelu(head.dense1(x)))
            expected.append(head.LayerNorm2(torch.nn.functional.gelu(head.dense2(x))))
    order = sorted(((row * s + i), k) for k, (row, i) in
                   enumerate((row, i) for row, a, e in spans for i in range(a, e)))
    torch.testing.assert_close(reps, torch.stack([expected[k] for _, k in order]))
    assert index.tolist() == [flat for flat, _ in order]

    # The loss depends on the hidden states only through the boundary tokens.
    projection = torch.nn.Linear(h, vocab)
    loss, accuracy = span_boundary_loss(head, hidden, left, right, position, labels, projection)
    loss.backward()
    touched = hidden.grad.abs().sum(-1) > 0
    boundaries = torch.zeros(b, s, dtype=torch.bool)
    for row, a, e in spans:
        boundaries[row, a - 1] = boundaries[row, e] = True
    assert torch.equal(touched, boundaries)
    assert 0.0 <= float(accuracy) <= 1.0

    # It learns: boundary states + position determine the target here.
    targets = labels.clone()
    targets[position >= 0] = (position[position >= 0] * 7 + 3) % vocab
    fixed = hidden.detach()
    optimiser = torch.optim.Adam(list(head.parameters()) + list(projection.parameters()), lr=3e-2)
    first = None
    for _ in range(60):
        optimiser.zero_grad()
        loss, accuracy = span_boundary_loss(head, fixed, left, right, position, targets, projection)
        first = float(loss.detach()) if first is None else first
        loss.backward()
        optimiser.step()
    assert float(loss.detach()) < 0.1 * first and float(accuracy) == 1.0

    # No spans in the batch: a zero loss that still backpropagates.
    empty = torch.full((b, s), -1)
    zero, _ = span_boundary_loss(head, fixed, empty, empty, empty, labels, projection)
    zero.backward()
    assert float(zero.detach()) == 0.0
