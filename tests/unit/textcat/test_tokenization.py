"""What a long text becomes under each `tokenize.long_documents` strategy, and the stats the tokenize stage reports.

Exact cases use a word-level vocabulary built here (`w0` ... `w59`, one sub-token each, id = 5 + i), so every
expected segment is written out by hand; the property checks run on the trained WordPiece `tiny_tokenizer`,
whose words split into several sub-tokens, against the tokenizer's own sub-token ids.
"""
from __future__ import annotations

import pytest

from nerflow.textcat.config import TextcatTokenizeConfig as TokenizeConfig
from nerflow.textcat.data import Document
from nerflow.textcat.tokenization import Encoder, encode_split, load_segments, tokenize_corpus

PAD, UNK, CLS, SEP, MASK = range(5)
WORDS = [f"w{i}" for i in range(60)]
LABELS = ["neg", "pos"]
LONG_TEXT = ("Maria Lopez works for Northwind Trading in New Salem . John Smith visited Berlin and Paris with Acme "
             "Corp employees . Anna Schmidt , a spokeswoman for Initech , said the deal was done . Nobody said "
             "anything about the Vortex 3000 launched by Globexians in Springfielding on Mondays , Northwindish "
             "Berliners and Schmidtville Acmeworks employees said .")


@pytest.fixture(scope="module")
def word_tokenizer():
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    wp = BertWordPieceTokenizer({token: i for i, token in enumerate(vocab)}, lowercase=False)
    tokenizer = BertTokenizerFast(tokenizer_object=wp._tokenizer, model_max_length=512, unk_token="[UNK]",
                                  sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    assert tokenizer("w0 w7", add_special_tokens=True)["input_ids"] == [CLS, 5, 12, SEP]
    return tokenizer


def words(n: int) -> str:
    return " ".join(WORDS[:n])


def ids(a: int, b: int) -> list[int]:
    """The ids of words w_a ... w_{b-1}."""
    return list(range(5 + a, 5 + b))


def segments_of(tokenizer, text: str, **cfg) -> list[list[int]]:
    encoder = Encoder(tokenizer, TokenizeConfig(**cfg))
    (token_ids,) = encoder.token_ids([text])
    return [s.input_ids for s in encoder.encode(0, token_ids, [1])]


# max_length 12 -> a budget of 10 sub-tokens between [CLS] and [SEP]; the text has 25.
def test_head_keeps_the_first_budget_sub_tokens(word_tokenizer):
    assert segments_of(word_tokenizer, words(25), max_length=12, long_documents="head") == \
           [[CLS, *ids(0, 10), SEP]]


def test_head_tail_keeps_a_head_share_from_the_start_and_the_rest_from_the_end(word_tokenizer):
    # round(10 * 0.3) = 3 from the start (w0-w2), 10 - 3 = 7 from the end (w18-w24)
    assert segments_of(word_tokenizer, words(25), max_length=12, long_documents="head_tail", head_share=0.3) == \
           [[CLS, *ids(0, 3), *ids(18, 25), SEP]]
    # round(10 * 0.75) = 8 from the start, 2 from the end
    assert segments_of(word_tokenizer, words(25), max_length=12, long_documents="head_tail", head_share=0.75) == \
           [[CLS, *ids(0, 8), *ids(23, 25), SEP]]


def test_windows_overlap_by_stride_and_the_last_ends_at_the_end(word_tokenizer):
    # step = 10 - 4 = 6: windows start at 0, 6, 12 and, ending at the text's end, 25 - 10 = 15
    assert segments_of(word_tokenizer, words(25), max_length=12, long_documents="windows", stride=4) == \
           [[CLS, *ids(0, 10), SEP], [CLS, *ids(6, 16), SEP], [CLS, *ids(12, 22), SEP], [CLS, *ids(15, 25), SEP]]
    # 22 sub-tokens: starts 0, 6 and 12 = 22 - 10, the last also at the regular stride (no duplicate window)
    assert segments_of(word_tokenizer, words(22), max_length=12, long_documents="windows", stride=4) == \
           [[CLS, *ids(0, 10), SEP], [CLS, *ids(6, 16), SEP], [CLS, *ids(12, 22), SEP]]


@pytest.mark.parametrize("strategy", ["head", "head_tail", "windows"])
@pytest.mark.parametrize("n", [0, 1, 9, 10])
def test_a_text_within_the_budget_is_one_whole_segment(word_tokenizer, strategy, n):
    assert segments_of(word_tokenizer, words(n), max_length=12, long_documents=strategy) == [[CLS, *ids(0, n), SEP]]


@pytest.mark.parametrize("strategy", ["head", "head_tail", "windows"])
def test_one_sub_token_over_the_budget_is_cut_or_split(word_tokenizer, strategy):
    got = segments_of(word_tokenizer, words(11), max_length=12, long_documents=strategy, stride=4,
                      head_share=0.3)
    expected = {"head": [[CLS, *ids(0, 10), SEP]],
                "head_tail": [[CLS, *ids(0, 3), *ids(4, 11), SEP]],        # only w3, in the middle, is cut
                "windows": [[CLS, *ids(0, 10), SEP], [CLS, *ids(1, 11), SEP]]}
    assert got == expected[strategy]


# --- the same rules on a real sub-word tokenizer, against its own sub-token ids, for every length up to 3 windows

@pytest.mark.parametrize("max_length,stride,head_share", [(12, 3, 0.25), (16, 4, 0.5), (9, 0, 0.4), (20, 9, 0.1)])
def test_strategies_on_sub_word_tokens(tiny_tokenizer, max_length, stride, head_share):
    full = tiny_tokenizer(LONG_TEXT, add_special_tokens=False)["input_ids"]
    cls, sep = [tiny_tokenizer.cls_token_id], [tiny_tokenizer.sep_token_id]
    budget = max_length - 2
    assert len(full) > len(LONG_TEXT.split()) and len(full) > 3 * budget   # sub-words, and long enough
    for n in range(0, 3 * budget + 2):
        text = tiny_tokenizer.decode(full[:n])
        sub = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]   # what the encoder will see
        common = dict(max_length=max_length, stride=stride, head_share=head_share)
        head = segments_of(tiny_tokenizer, text, long_documents="head", **common)
        head_tail = segments_of(tiny_tokenizer, text, long_documents="head_tail", **common)
        windows = segments_of(tiny_tokenizer, text, long_documents="windows", **common)
        if len(sub) <= budget:
            assert head == head_tail == windows == [cls + sub + sep], n
            continue
        assert head == [cls + sub[:budget] + sep], n
        keep = round(budget * head_share)
        assert head_tail == [cls + sub[:keep] + sub[len(sub) - (budget - keep):] + sep], n
        assert all(w[0] == cls[0] and w[-1] == sep[0] and len(w) == max_length for w in windows), n
        inner = [w[1:-1] for w in windows]
        starts = []   # locate every window in the text: consecutive, overlapping by the stride
        for w in inner:
            start = next(s for s in range((starts[-1] + 1) if starts else 0, len(sub) - budget + 1)
                         if sub[s:s + budget] == w)
            starts.append(start)
        assert starts[0] == 0 and starts[-1] + budget == len(sub), (n, starts)
        assert all(b - a == budget - stride for a, b in zip(starts[:-2], starts[1:-1])), (n, starts)
        assert 0 < starts[-1] - starts[-2] <= budget - stride, (n, starts)   # the last: overlap >= stride
        assert set().union(*(range(s, s + budget) for s in starts)) == set(range(len(sub)))


# --- tokenize_corpus: stats on a hand-made corpus (word tokenizer: a text of n words is n sub-tokens)

TRAIN_LENGTHS = [2, 4, 6, 8, 10, 12, 14, 30]     # budget 10: 12, 14 and 30 are over it (3 of 8)
VALIDATION_LENGTHS = [3, 11]                     # 11 is over it (1 of 2)


def hand_corpus() -> dict[str, list[Document]]:
    def docs(lengths):
        return [Document(words(n), [LABELS[i % 2]], f"hand:{i}") for i, n in enumerate(lengths)]
    return {"train": docs(TRAIN_LENGTHS), "validation": docs(VALIDATION_LENGTHS)}


@pytest.mark.parametrize("strategy", ["head", "head_tail", "windows"])
def test_tokenize_corpus_stats(word_tokenizer, tmp_path, strategy):
    cfg = TokenizeConfig(max_length=12, stride=4, long_documents=strategy, head_share=0.3)
    stats = tokenize_corpus(word_tokenizer, hand_corpus(), LABELS, cfg, tmp_path)
    # lengths are the same whatever the strategy: mean 86 / 8; numpy's linear percentiles of the sorted train
    # lengths: p50 at index 3.5 = (8 + 10) / 2; p90 at index 6.3 = 14 + 0.3 * (30 - 14)
    assert stats["tokens_mean_train"] == pytest.approx(10.75)
    assert stats["tokens_p50_train"] == pytest.approx(9.0)
    assert stats["tokens_p90_train"] == pytest.approx(18.8)
    assert stats["tokens_max_train"] == 30
    assert stats["tokens_mean_validation"] == pytest.approx(7.0)
    assert stats["tokens_p50_validation"] == pytest.approx(7.0)
    assert stats["tokens_p90_validation"] == pytest.approx(3 + 0.9 * 8)
    assert stats["tokens_max_validation"] == 11
    assert stats["over_max_length_share_train"] == pytest.approx(3 / 8)
    assert stats["over_max_length_share_validation"] == pytest.approx(1 / 2)
    if strategy == "windows":
        # windows per text (step 6): n <= 10 -> 1; 12 -> starts 0, 2; 14 -> 0, 4; 30 -> 0, 6, 12, 18, 20; 11 -> 0, 1
        assert stats["windows_per_text_train"] == pytest.approx((5 * 1 + 2 + 2 + 5) / 8)
        assert stats["windows_per_text_validation"] == pytest.approx((1 + 2) / 2)
        assert (stats["segments_train"], stats["segments_validation"]) == (14, 3)
        assert stats["truncated_share_train"] == stats["truncated_share_validation"] == 0.0
        assert stats["truncated_share"] == 0.0   # nothing is cut
    else:
        assert stats["windows_per_text_train"] == stats["windows_per_text_validation"] == 1.0
        assert (stats["segments_train"], stats["segments_validation"]) == (8, 2)
        assert stats["truncated_share_train"] == pytest.approx(3 / 8)
        assert stats["truncated_share_validation"] == pytest.approx(1 / 2)
        assert stats["truncated_share"] == pytest.approx((3 + 1) / 10)   # over all texts of all splits
    assert stats["texts_per_s"] > 0

    # what was saved is what the encoder makes, with the text's index and its label ids
    encoder = Encoder(word_tokenizer, cfg)
    for split, docs in hand_corpus().items():
        saved = load_segments(tmp_path / split)
        assert saved == encode_split(encoder, docs, LABELS)[0]
        assert [s.labels for s in saved] == [[LABELS.index(docs[s.doc].labels[0])] for s in saved]
        assert sorted({s.doc for s in saved}) == list(range(len(docs)))


def test_multi_label_segments_carry_every_label_id(word_tokenizer):
    docs = [Document(words(3), ["b", "c"], "x:1"), Document(words(15), [], "x:2")]
    segments, lengths = encode_split(Encoder(word_tokenizer, TokenizeConfig(max_length=12, stride=4)), docs,
                                     ["a", "b", "c"])
    assert lengths == [3, 15]
    assert [(s.doc, s.labels) for s in segments] == [(0, [1, 2]), (1, []), (1, [])]


def test_a_text_longer_than_the_model_reads_is_windowed_without_the_tokenizers_warning(capfd):
    """Windows are how a long text is read, so transformers' "Token indices sequence length is longer than the
    specified maximum sequence length" warning is wrong here; it landed in served models' logs for long reviews."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast
    from transformers.utils import logging as hf_logging

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    wp = BertWordPieceTokenizer({token: i for i, token in enumerate(vocab)}, lowercase=False)
    tokenizer = BertTokenizerFast(tokenizer_object=wp._tokenizer, model_max_length=16, unk_token="[UNK]",
                                  sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()   # what a served model's process has: nothing quietens transformers there
    try:
        capfd.readouterr()
        segments = segments_of(tokenizer, words(40), max_length=12, stride=4, long_documents="windows")
        said = capfd.readouterr().err
    finally:
        hf_logging.set_verbosity(level)
    assert len(segments) > 3 and "sequence length is longer" not in said, said
