"""Sequence decoding of predicted tags: the most probable valid IOB2 sequence. Expected values are worked by hand,
and the decoder is checked against brute force over every tag sequence."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from nerflow.ner.predict import decode_iob2, iob2_transitions, predict_windows
from nerflow.ner.schemes import invalid_iob2_positions

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ALLOWED = iob2_transitions(LABELS)


def probs(*rows: dict[str, float]) -> np.ndarray:
    """One row per word; tags not named share what is left of the probability mass."""
    out = []
    for row in rows:
        rest = (1.0 - sum(row.values())) / (len(LABELS) - len(row))
        out.append([row.get(tag, rest) for tag in LABELS])
    return np.array(out)


def decode(p: np.ndarray) -> list[str]:
    return [LABELS[i] for i in decode_iob2(p, ALLOWED)]


def test_transitions_forbid_only_i_that_does_not_continue_its_type():
    start = len(LABELS)
    assert not ALLOWED[start, LABELS.index("I-PER")] and ALLOWED[start, LABELS.index("B-PER")]
    assert ALLOWED[LABELS.index("B-PER"), LABELS.index("I-PER")]
    assert ALLOWED[LABELS.index("I-PER"), LABELS.index("I-PER")]
    assert not ALLOWED[LABELS.index("O"), LABELS.index("I-PER")]
    assert not ALLOWED[LABELS.index("B-LOC"), LABELS.index("I-PER")]
    assert ALLOWED[:, [0, 1, 3]].all()   # O and B-X may follow anything


def test_confident_fragment_becomes_the_entity_the_model_believes():
    # argmax: O I-PER, which strict scoring reads as no entity. Valid readings: B-PER I-PER = .35 * .8 = .28
    # beats O O = .6 * .05 = .03 and O B-PER.
    p = probs({"O": 0.6, "B-PER": 0.35}, {"I-PER": 0.8, "O": 0.05})
    assert [LABELS[i] for i in p.argmax(-1)] == ["O", "I-PER"]
    assert decode(p) == ["B-PER", "I-PER"]


def test_weak_fragment_is_dropped():
    # O O = .95 * .45 = .43 beats B-PER I-PER = .03 * .5 = .015
    p = probs({"O": 0.95, "B-PER": 0.03}, {"I-PER": 0.5, "O": 0.45})
    assert decode(p) == ["O", "O"]


def test_type_switch_inside_an_entity_is_resolved_by_probability():
    # B-PER then I-LOC (.6) or I-PER (.3): B-PER I-PER = .9 * .3 = .27 beats B-PER O (.9 * .05) and B-LOC I-LOC
    # (.025 * .6)
    p = probs({"B-PER": 0.9, "B-LOC": 0.025}, {"I-LOC": 0.6, "I-PER": 0.3, "O": 0.05})
    assert decode(p) == ["B-PER", "I-PER"]


def test_sentence_cannot_start_inside_an_entity():
    p = probs({"I-LOC": 0.7, "B-LOC": 0.2})
    assert decode(p) == ["B-LOC"]


def test_valid_argmax_is_kept_and_empty_sentence_is_empty():
    p = probs({"B-PER": 0.9}, {"I-PER": 0.8}, {"O": 0.9}, {"B-LOC": 0.7})
    assert decode(p) == ["B-PER", "I-PER", "O", "B-LOC"]
    assert decode_iob2(np.zeros((0, len(LABELS))), ALLOWED) == []


@pytest.mark.parametrize("seed", range(20))
def test_viterbi_equals_brute_force_over_valid_sequences(seed):
    rng = np.random.default_rng(seed)
    n_words = int(rng.integers(1, 5))
    p = rng.dirichlet(np.full(len(LABELS), 0.5), size=n_words)
    valid = [seq for seq in itertools.product(range(len(LABELS)), repeat=n_words)
             if not invalid_iob2_positions([LABELS[i] for i in seq])]
    best = max(valid, key=lambda seq: sum(np.log(p[t, i]) for t, i in enumerate(seq)))
    got = decode_iob2(p, ALLOWED)
    assert not invalid_iob2_positions([LABELS[i] for i in got])
    log_score = lambda seq: sum(np.log(p[t, i]) for t, i in enumerate(seq))  # noqa: E731
    assert np.isclose(log_score(got), log_score(best))


def test_unknown_decoder_is_an_error_not_a_silent_argmax():
    with pytest.raises(ValueError, match="decode must be 'viterbi' or 'argmax'"):
        predict_windows(None, [], [], {0: "O"}, 0, decode="beam")


def decode_one_by_one(p: np.ndarray, allowed: np.ndarray) -> list[int]:
    """The textbook Viterbi, one sentence and one word at a time: what the batched decoder replaced."""
    if len(p) == 0:
        return []
    penalty = np.where(allowed, 0.0, -np.inf)
    logp = np.log(np.clip(p, 1e-12, None))
    score = logp[0] + penalty[-1]
    backpointers = []
    for t in range(1, len(logp)):
        candidates = score[:, None] + penalty[:-1]
        backpointers.append(candidates.argmax(0))
        score = candidates.max(0) + logp[t]
    path = [int(score.argmax())]
    for back in reversed(backpointers):
        path.append(int(back[path[-1]]))
    return path[::-1]


@pytest.mark.parametrize("cells", [1 << 18, 7])
def test_batched_viterbi_gives_every_sentence_the_path_it_gets_alone(monkeypatch, cells):
    # sentences of mixed lengths (empty ones, a long one) decoded together, in one group or cut into many small ones,
    # each get exactly the path of the one-sentence decoder; ties too (rows of equal probabilities)
    import nerflow.ner.predict as predict

    monkeypatch.setattr(predict, "VITERBI_CELLS", cells)
    rng = np.random.default_rng(0)
    lengths = [0, 1, 3, 0, 40, 2, 17, 1, 5, 9, 9, 0, 120, 4]
    sentences = [rng.dirichlet(np.full(len(LABELS), 0.3), size=n) for n in lengths]
    sentences.append(np.full((6, len(LABELS)), 1 / len(LABELS)))
    got = predict.decode_iob2_batch(sentences, ALLOWED)
    assert got == [decode_one_by_one(p, ALLOWED) for p in sentences]
    assert [len(path) for path in got] == [*lengths, 6]
