"""Document context (tokenize.context: document): neighbouring sentences of the same document change what the
encoder sees, never which words are trained or scored; the setting travels in the model's meta to prediction."""
from __future__ import annotations

import shutil

import pytest
import torch

from nerflow.ner import scoring as ner_scoring
from nerflow.ner.config import NerConfig
from nerflow.ner.data import Sentence, write_split
from nerflow.ner.evaluate import score
from nerflow.ner.predict import Predictor, predict_windows, split_sentences, write_meta
from nerflow.ner.tokenization import IGNORE, Encoder, encode_split, encoder_for, merge_windows
from nerflow.scoring import score as protocol_score

LABELS = ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
FIRST = "Maria Lopez works for Northwind Trading .".split()
MIDDLE = "John Smith visited Berlin .".split()
LAST = "Anna Schmidt said the deal was done .".split()
OTHER_DOC = "Nobody said anything about it .".split()


def sentence(words: list[str], doc: int, tags: dict[int, str] | None = None) -> Sentence:
    return Sentence(words, [(tags or {}).get(i, "O") for i in range(len(words))], "t.jsonl:1", doc)


def own_words(window):
    """(word ids, labels) at the positions that are scored: the sentence's own words."""
    scored = [i for i, w in enumerate(window.word_ids) if w >= 0]
    return [window.word_ids[i] for i in scored], [lab for lab in window.labels if lab != IGNORE]


def test_context_adds_neighbours_sub_tokens_but_scores_only_the_sentences_own_words(tiny_tokenizer):
    corpus = [sentence(FIRST, 0), sentence(MIDDLE, 0, {0: "B-PER", 1: "I-PER"}), sentence(LAST, 0),
              sentence(OTHER_DOC, 1)]
    alone = encode_split(Encoder(tiny_tokenizer, 128, 8), corpus, LABELS)
    context = encode_split(Encoder(tiny_tokenizer, 128, 8, context_tokens=96), corpus, LABELS)
    assert len(alone) == len(context) == 4                      # one window per sentence either way
    enc = Encoder(tiny_tokenizer, 128, 8)
    middle = context[1]
    # whole neighbouring sentences fit the budget: [CLS] FIRST MIDDLE LAST [SEP]
    expected = [t for words in (FIRST, MIDDLE, LAST) for p in enc.word_pieces(words) for t in p]
    assert middle.input_ids[1:-1] == expected and middle.input_ids != alone[1].input_ids
    assert own_words(middle) == own_words(alone[1]) == ([0, 1, 2, 3, 4], [3, 4, 0, 0, 0])
    # the last sentence of document 0 sees only what came before in its document, never document 1
    last_pieces = [t for p in enc.word_pieces(LAST) for t in p]
    assert context[2].input_ids[-1 - len(last_pieces):-1] == last_pieces
    assert context[3].input_ids == alone[3].input_ids           # document 1 has one sentence: nothing to add


def test_context_budget_takes_whole_words_split_between_the_sides(tiny_tokenizer):
    corpus = [sentence(FIRST, 0), sentence(MIDDLE, 0), sentence(LAST, 0)]
    budget = 6
    (_, middle, _) = encode_split(Encoder(tiny_tokenizer, 128, 8, context_tokens=budget), corpus, LABELS)
    enc = Encoder(tiny_tokenizer, 128, 8)
    own = [t for p in enc.word_pieces(MIDDLE) for t in p]
    body = middle.input_ids[1:-1]
    start = next(i for i in range(len(body)) if body[i:i + len(own)] == own)
    before, after = body[:start], body[start + len(own):]
    assert 0 < len(before) <= budget // 2 and 0 < len(after) and len(before) + len(after) <= budget
    # whole words, nearest ones: the left context is the tail of FIRST, the right one the head of LAST
    left_words = [t for p in enc.word_pieces(FIRST) for t in p]
    right_words = [t for p in enc.word_pieces(LAST) for t in p]
    assert left_words[-len(before):] == before and right_words[:len(after)] == after
    assert any(sum(len(p) for p in enc.word_pieces(FIRST)[k:]) == len(before) for k in range(len(FIRST)))


@pytest.mark.parametrize("max_length", [9, 12, 16])
def test_a_sentence_near_or_over_the_window_has_every_word_scored_exactly_once(tiny_tokenizer, max_length):
    long = (FIRST + MIDDLE + LAST)[:-1]
    corpus = [sentence(MIDDLE, 0), sentence(long, 0), sentence(LAST, 0)]
    windows = encode_split(Encoder(tiny_tokenizer, max_length, 3, context_tokens=96), corpus, LABELS)
    assert all(len(w.input_ids) <= max_length for w in windows)
    assert any(w.sentence == 1 and w.word_start > 0 for w in windows)       # the long sentence is windowed
    # each window's own words are consecutive; merging gives every word of every sentence one score
    for w in windows:
        assert own_words(w)[0] == list(range(w.word_start, w.word_end))
    scores = [{w: (k, w) for w in win.word_ids if w >= 0} for k, win in enumerate(windows)]
    merged = merge_windows(windows, scores, [len(s.tokens) for s in corpus])
    assert all(score is not None and score[1] == w for sent in merged for w, score in enumerate(sent))


def test_the_setting_enters_the_model_meta_and_the_default_is_sentence():
    from nerflow.ner.training import job_fields

    assert NerConfig().tokenize.context == "sentence"
    cfg = NerConfig.model_validate({"tokenize": {"context": "document", "context_tokens": 40}})
    meta = job_fields(cfg)["meta"]
    assert meta["context"] == "document" and meta["context_tokens"] == 40
    with pytest.raises(ValueError, match="tokenize.context"):
        NerConfig.model_validate({"tokenize": {"context": "paragraph"}})


@pytest.fixture(scope="module")
def document_predictor(tiny_model_dir, tmp_path_factory):
    """A tiny model folder saved as training saves it, with document context in its meta."""
    from transformers import AutoModelForTokenClassification

    folder = tmp_path_factory.mktemp("doc-model")
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=len(LABELS))
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, folder / name)
    write_meta(folder, LABELS, 128, 8, context="document", context_tokens=96)
    return Predictor.load(folder, device="cpu")


def test_the_served_scorer_reads_documents_like_evaluation(document_predictor, tmp_path):
    p = document_predictor
    assert p.context == "document" and p.context_tokens == 96
    corpus = [sentence(FIRST, 0), sentence(MIDDLE, 0), sentence(LAST, 0), sentence(OTHER_DOC, 1)]
    windows = encode_split(encoder_for(p.tokenizer, {"max_length": 128, "stride": 8, "context": "document",
                                                     "context_tokens": 96}), corpus, LABELS)
    evaluated, _ = predict_windows(p.model, windows, [len(s.tokens) for s in corpus], dict(enumerate(LABELS)),
                                   p.tokenizer.pad_token_id)
    # the gate's path: the canonical split's examples through the served-scorer protocol, scored like evaluation
    write_split(corpus, tmp_path / "test.jsonl")
    examples = ner_scoring.examples(tmp_path / "test.jsonl")
    served = protocol_score({"v1": p}, examples)["v1"]["pred"]
    assert served == evaluated
    gold = ner_scoring.gold(examples)
    assert score(gold, served).f1 == score(gold, evaluated).f1
    # the context is really there: the scorer's windows are the evaluation windows, not the sentences alone
    assert [w.input_ids for w in p.windows([s.tokens for s in corpus], [s.doc for s in corpus])] == \
        [w.input_ids for w in windows]


def test_a_multi_sentence_text_is_read_sentence_by_sentence_with_its_neighbours(document_predictor):
    p = document_predictor
    words = FIRST + MIDDLE + LAST
    assert split_sentences(words) == [FIRST, MIDDLE, LAST]
    _, with_context = p.predict_texts_words([words])
    _, alone = p.predict_words([FIRST, MIDDLE, LAST])           # no docs: each sentence by itself
    flat_alone = [c for sent in alone for c in sent]
    assert len(with_context[0]) == len(words)
    assert with_context[0] != pytest.approx(flat_alone)         # neighbours changed the model's input
    spans = p.predict_text([" ".join(words)])
    assert all(" ".join(words)[s["start"]:s["end"]] == s["text"] for s in spans[0])
