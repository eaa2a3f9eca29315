"""Label alignment and the window split that keeps long sentences whole."""
from __future__ import annotations

import pytest
import torch

from nerflow.ner.config import NerTokenizeConfig as TokenizeConfig
from nerflow.ner.data import Sentence
from nerflow.ner.predict import predict_windows
from nerflow.ner.tokenization import (
    IGNORE,
    Encoder,
    encode_split,
    load_windows,
    merge_windows,
    plan_windows,
    save_windows,
    tokenize_corpus,
)

LABELS = ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
LONG = ("Maria Lopez works for Northwind Trading in New Salem . John Smith visited Berlin and Paris with "
        "Acme Corp employees . Anna Schmidt said the deal was done").split()


@pytest.mark.parametrize("lengths,budget,stride", [
    ([1] * 30, 8, 3), ([2, 1, 3, 1, 1, 2, 2, 1, 3, 1], 6, 2), ([3, 3, 3, 8], 10, 6), ([5] * 6, 10, 6),
    ([1] * 5, 8, 3), ([4, 4, 4], 4, 2),
])
def test_plan_windows_covers_every_word_within_budget(lengths, budget, stride):
    spans = plan_windows(lengths, budget, stride)
    covered = {w for a, b in spans for w in range(a, b)}
    assert covered == set(range(len(lengths)))
    assert all(sum(lengths[a:b]) <= budget for a, b in spans)
    assert [a for a, _ in spans] == sorted({a for a, _ in spans})          # strictly moves forward
    assert all(b2 > b1 for (_, b1), (_, b2) in zip(spans, spans[1:]))     # every window adds new words
    for (a1, b1), (a2, b2) in zip(spans, spans[1:]):                       # overlap reaches the stride if it fits
        if sum(lengths[a2:b1]) < stride:
            assert a2 == a1 + 1 or sum(lengths[a2 - 1:b2]) > budget


def test_short_sentence_is_one_window_with_first_subtoken_labels(tiny_tokenizer):
    enc = Encoder(tiny_tokenizer, max_length=128, stride=8)
    words = ["Maria", "Lopez", "works", "Springfielding"]
    (win,) = enc.encode(0, words, [3, 4, 0, 0])
    pieces = enc.word_pieces(words)
    assert len(pieces[3]) > 1                                  # the made-up word splits into sub-tokens
    assert win.input_ids[0] == tiny_tokenizer.cls_token_id and win.input_ids[-1] == tiny_tokenizer.sep_token_id
    first_positions = [i for i, w in enumerate(win.word_ids) if w >= 0]
    assert [win.word_ids[i] for i in first_positions] == [0, 1, 2, 3]
    assert [win.labels[i] for i in first_positions] == [3, 4, 0, 0]
    labelled = [lab for lab in win.labels if lab != IGNORE]
    assert labelled == [3, 4, 0, 0]                            # later sub-tokens and specials are ignored


def test_label_all_subtokens_continues_entity_as_inside(tiny_tokenizer):
    enc = Encoder(tiny_tokenizer, max_length=128, stride=8, label_all_subtokens=True)
    words = ["Springfielding", "said"]
    n_pieces = len(enc.word_pieces(words)[0])
    (win,) = enc.encode(0, words, [3, 0], i_of={3: 4})
    assert win.labels[1:1 + n_pieces] == [3] + [4] * (n_pieces - 1)   # B-PER then I-PER on later pieces


def test_long_sentence_split_into_overlapping_windows_loses_no_word(tiny_tokenizer):
    enc = Encoder(tiny_tokenizer, max_length=16, stride=4)
    windows = enc.encode(0, LONG, [0] * len(LONG))
    assert len(windows) > 1
    assert all(len(w.input_ids) <= 16 for w in windows)
    seen = {w for win in windows for w in win.word_ids if w >= 0}
    assert seen == set(range(len(LONG)))
    for a, b in zip(windows, windows[1:]):
        assert b.word_start < a.word_end                          # consecutive windows overlap


def test_entity_across_window_boundary_is_whole_in_the_next_window(tiny_tokenizer):
    enc = Encoder(tiny_tokenizer, max_length=16, stride=4)
    windows = enc.encode(0, LONG, None)
    first = windows[0]
    boundary = first.word_end        # an entity made of words [boundary-1, boundary] crosses the first window's edge
    assert any(w.word_start <= boundary - 1 and boundary < w.word_end for w in windows[1:])


def test_merge_takes_each_word_from_its_most_central_window():
    from nerflow.ner.tokenization import Window

    w0 = Window(0, 0, 6, [], [], [])
    w1 = Window(0, 3, 9, [], [], [])
    scores0 = {w: ("w0", w) for w in range(0, 6)}
    scores1 = {w: ("w1", w) for w in range(3, 9)}
    merged = merge_windows([w0, w1], [scores0, scores1], [9])[0]
    # word 3: centrality 2 in w0 (min(3, 2)) vs 0 in w1 -> w0; word 4: 1 vs 1, a tie keeps the earlier window;
    # word 5: 0 in w0 vs 2 in w1 -> w1
    assert [m[0] for m in merged] == ["w0"] * 5 + ["w1"] * 4
    assert [m[1] for m in merged] == list(range(9))


def test_windowed_prediction_gives_one_tag_per_word(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=len(LABELS))
    sentences = [LONG, LONG[:5]]
    enc = Encoder(tiny_tokenizer, max_length=16, stride=4)
    windows = [w for i, s in enumerate(sentences) for w in enc.encode(i, s, None)]
    torch.manual_seed(0)
    tags, conf = predict_windows(model, windows, [len(s) for s in sentences], dict(enumerate(LABELS)), 0, 4)
    assert [len(t) for t in tags] == [len(LONG), 5]
    assert all(t in LABELS for sent in tags for t in sent)
    assert all(0 < c <= 1 for sent in conf for c in sent)


def test_tokenize_corpus_roundtrips_windows_through_arrow(tiny_tokenizer, tmp_path):
    corpus = {"train": [Sentence(LONG, ["O"] * len(LONG), "t:1")],
              "validation": [Sentence(["Maria"], ["B-PER"], "v:1")],
              "test": [Sentence(["Lopez"], ["B-PER"], "x:1")]}
    stats = tokenize_corpus(tiny_tokenizer, corpus, LABELS, TokenizeConfig(max_length=16, stride=4), tmp_path)
    assert stats["extra_windows_train"] >= 1 and stats["sentences_per_s"] > 0
    expected = encode_split(Encoder(tiny_tokenizer, 16, 4), corpus["train"], LABELS)
    assert load_windows(tmp_path / "train") == expected
    save_windows(expected, tmp_path / "again")
    assert load_windows(tmp_path / "again") == expected


def test_max_length_without_room_for_words_is_an_error(tiny_tokenizer):
    with pytest.raises(ValueError, match="max_length"):
        Encoder(tiny_tokenizer, max_length=3, stride=0)


def test_sentences_tokenized_together_get_the_pieces_each_gets_alone(tiny_tokenizer):
    # one tokenizer call for many sentences (prediction's host work) must not change a word's sub-tokens: empty
    # sentences, a word the tokenizer maps to nothing (a lone control character: one [UNK] position), a word longer
    # than the budget (clipped)
    enc = Encoder(tiny_tokenizer, max_length=8, stride=2)
    sentences = [LONG[:5], [], ["\x07"], LONG, ["Northwind" * 6], [], LONG[7:9]]

    def alone(words):
        out = tiny_tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        pieces = [[] for _ in words]
        for token_id, w in zip(out["input_ids"], out.word_ids()):
            if w is not None:
                pieces[w].append(token_id)
        return [p[: enc.budget] if p else [tiny_tokenizer.unk_token_id] for p in pieces]

    got = enc.word_pieces_batch(sentences)
    assert got == [alone(words) for words in sentences]
    assert got[1] == got[5] == [] and got[2] == [[tiny_tokenizer.unk_token_id]]
    assert len(got[4][0]) == enc.budget
