"""`nerflow explain`: attributions that add up (convergence delta within the stated bound), that find the word a
model was trained to key on, and the command's outputs (text, JSON lines, a self-contained HTML page, plain text
into a pipe, one error line for bad input)."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch

from nerflow import explain
from nerflow.flows import cli
from tests.conftest import TINY_TEXTS, build_tiny_model

ANSI = re.compile(r"\x1b\[")
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TRIGGER = "zork"
FILLER = "the a cat dog sat ran over under big small red blue green house tree river road car".split()
NAMES = "alice bob carol dave erin frank".split()
# a trained tiny model switches its answer over a few percent of the path from the baseline: more points than
# the default (chosen on MiniLM, docs/cli.md) are needed for the integral to converge; cheap at this size
TINY_TRAINED_STEPS = 512


def ner_folder(path: Path, texts: list[str], labels: list[str] = NER_LABELS, max_length: int = 16, **meta) -> Path:
    from transformers import AutoModelForTokenClassification

    from nerflow.ner.predict import write_meta

    build_tiny_model(path, texts, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    AutoModelForTokenClassification.from_pretrained(path, num_labels=len(labels)).save_pretrained(path)
    write_meta(path, labels, max_length, 4, **meta)
    return path


def classifier_folder(path: Path, texts: list[str], labels: list[str], multi_label: bool = False,
                      max_length: int = 16) -> Path:
    from transformers import AutoModelForSequenceClassification

    from nerflow.textcat.predict import write_meta

    build_tiny_model(path, texts, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels)).save_pretrained(path)
    write_meta(path, labels=labels, multi_label=multi_label, max_length=max_length, stride=4,
               long_documents="windows", head_share=0.5, pool="mean", thresholds=[0.0] * len(labels))
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small gain nothing from a second thread, and on a busy machine lose a lot to it (a trigger test
    took 60 s with two threads and 2 s with one while other jobs ran)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory) -> Path:
    return ner_folder(tmp_path_factory.mktemp("ner"), TINY_TEXTS * 20)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    return classifier_folder(tmp_path_factory.mktemp("textcat"), TINY_TEXTS * 20, ["neg", "pos"])


# ---------------------------------------------------------------------------------------- (a) attributions add up
LONG = "Maria Lopez works for Northwind Trading in New Salem . John Smith visited Berlin and Paris with Acme Corp ."


@pytest.mark.parametrize("task", ["ner", "ner-document", "textcat", "multi-label"])
def test_attributions_add_up_to_the_targets_change_within_the_bound(task, ner_dir, classifier_dir, tmp_path):
    """On a text longer than the window (16 sub-tokens): each entity or label explained in its window, and the
    words' attributions sum to target(text) - target(baseline) within DELTA_WARNING at the default steps. The
    untrained tiny models are smooth: a failure here is a wrong sum, not a hard integral."""
    from nerflow.ner.explain import load_explainer as ner_explainer
    from nerflow.textcat.explain import load_explainer as textcat_explainer

    if task == "ner":
        found = ner_explainer(ner_dir)(LONG)
    elif task == "ner-document":   # sentence by sentence, each window filled with its neighbours' words
        folder = ner_folder(tmp_path, TINY_TEXTS * 20, context="document", context_tokens=6)
        found = ner_explainer(folder)(LONG)
        assert any(e.words[0].start < e.subject["entity"]["start"] - 30 for e in found)   # context words count
    elif task == "textcat":
        found = textcat_explainer(classifier_dir)(LONG)
    else:   # thresholds 0: every label is predicted, and each is explained
        found = textcat_explainer(classifier_folder(tmp_path, TINY_TEXTS * 20, ["a", "b", "c"], True))(LONG)
        assert [e.subject["label"] for e in found] == ["a", "b", "c"]
    assert found and all(e.steps == explain.DEFAULT_STEPS for e in found)
    for e in found:
        assert abs(e.delta) < explain.DELTA_WARNING
        total = sum(w.attribution for w in e.words)
        assert total == pytest.approx(e.value - e.baseline_value + e.delta, abs=1e-3)
        assert all(LONG[w.start:w.end] == w.word for w in e.words)   # offsets into the text
        assert e.note   # a long text: which window was read is said


def test_ner_explains_each_predicted_entity_as_predict_spans_it(ner_dir):
    from nerflow.ner.explain import load_explainer
    from nerflow.ner.predict import load_predictor

    found = load_explainer(ner_dir)(LONG, 8)
    assert [e.subject["entity"] for e in found] == load_predictor(ner_dir)([LONG])[0]


# ----------------------------------------------------------------------------- (b) the planted trigger word wins
def trigger_texts(rng: random.Random, n: int, always: bool = False) -> list[tuple[list[str], int]]:
    """Filler words and names; the trigger in about half of them (in all with `always`), anywhere."""
    out = []
    for _ in range(n):
        words = [rng.choice(FILLER + NAMES) for _ in range(rng.randint(4, 9))]
        where = rng.randrange(len(words)) if always or rng.random() < 0.5 else None
        if where is not None:
            words.insert(where, TRIGGER)
        out.append((words, where))
    return out


def train(model, batch, steps: int = 200, lr: float = 1e-3, stop: float = 0.1) -> None:
    """AdamW on `batch()` (a dict of model inputs with labels) until the mean loss of the last 10 steps is below
    `stop`: no further, a model trained to saturation switches its answer so abruptly along the path from the
    baseline that the integral needs many more points."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        loss = model(**batch()).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses = [*losses[-9:], loss.item()]
        if len(losses) == 10 and sum(losses) / 10 < stop:
            break
    model.eval()


def test_a_classifier_keyed_on_a_trigger_word_gives_it_the_top_attribution(tmp_path):
    """Label 1 exactly when `zork` occurs: in every explained text, `zork` has the largest attribution."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nerflow.textcat.explain import load_explainer

    rng = random.Random(0)
    data = [(" ".join(words), int(where is not None)) for words, where in trigger_texts(rng, 1000)]
    folder = classifier_folder(tmp_path, [t for t, _ in data], ["other", "trigger"], max_length=32)
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForSequenceClassification.from_pretrained(folder)

    def batch():
        rows = rng.sample(data, 16)
        return {**tokenizer([t for t, _ in rows], padding=True, return_tensors="pt"),
                "labels": torch.tensor([y for _, y in rows])}

    train(model, batch)
    model.save_pretrained(folder)
    explainer = load_explainer(folder)
    for words, _ in trigger_texts(random.Random(1), 5, always=True):
        (e,) = explainer(" ".join(words), TINY_TRAINED_STEPS)
        assert e.subject["label"] == "trigger"
        assert max(e.words, key=lambda w: w.attribution).word == TRIGGER, explain.text_block(e, False)
        assert abs(e.delta) < explain.DELTA_WARNING


def test_a_tagger_keyed_on_a_trigger_word_gives_it_the_top_attribution(tmp_path):
    """The word after `zork` is a PER entity, whatever word it is (names occur elsewhere as O too): each entity's
    explanation gives `zork` the largest attribution, above the entity's own word."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerflow.ner.explain import load_explainer

    rng = random.Random(0)
    data = [(words, where) for words, where in trigger_texts(rng, 1000) if where is None or where + 1 < len(words)]
    labels = ["O", "B-PER", "I-PER"]
    folder = ner_folder(tmp_path, [" ".join(w) for w, _ in data], labels, max_length=32)
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForTokenClassification.from_pretrained(folder)

    def batch():
        rows = rng.sample(data, 16)
        enc = tokenizer([w for w, _ in rows], is_split_into_words=True, padding=True, return_tensors="pt")
        tags = [[1 if where is not None and i == where + 1 else 0 for i in range(len(w))] for w, where in rows]
        # the tag on each word's first sub-token, as nerflow trains (-100: ignored)
        aligned = [[-100 if w is None or (j and enc.word_ids(r)[j - 1] == w) else tags[r][w]
                    for j, w in enumerate(enc.word_ids(r))] for r in range(len(rows))]
        return {**enc, "labels": torch.tensor(aligned)}

    train(model, batch, steps=900, lr=3e-3, stop=0.005)
    model.save_pretrained(folder)
    explainer = load_explainer(folder)
    keyed = []
    for words, where in trigger_texts(random.Random(1), 5, always=True):
        if where + 1 == len(words):
            continue
        found = explainer(" ".join(words), TINY_TRAINED_STEPS)
        # the explanation of the entity after the trigger. The tiny tagger (its WordPiece vocabulary is trained per
        # run, not deterministically) now and then adds a spurious entity or misses one text's: neither is what is
        # checked here, so most texts, not all, must give one
        keyed += [e for e in found if e.subject["entity"]["text"] == words[where + 1]]
    assert len(keyed) >= 3, [e.title for e in keyed]
    for e in keyed:
        assert max(e.words, key=lambda w: w.attribution).word == TRIGGER, explain.text_block(e, False)
        assert abs(e.delta) < explain.DELTA_WARNING


# --------------------------------------------------------------------------------------------- (c) the command
def test_explain_prints_marked_words_into_a_pipe_and_a_summary(ner_dir, capsys):
    assert cli.main(["explain", str(ner_dir), "Maria Lopez works for Northwind Trading in New Salem .",
                     "--steps", "8"]) == 0
    out, err = capsys.readouterr()
    assert not ANSI.search(out)                                # captured stdout is no terminal, like a pipe
    assert re.search(r"Maria\([+-]\d+\.\d\d\) Lopez\([+-]\d+\.\d\d\)", out)
    assert "convergence delta" in out and "8 steps" in out
    assert re.match(r"\d+ explanations of 1 documents in [\d.]+ s \(8 steps\); \|convergence delta\| mean", err)


def test_explain_json_lines_carry_words_offsets_delta_and_steps(classifier_dir, tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": 7, "text": "Anna Schmidt said the deal was done ."}\n'
                    '{"id": 8, "text": "Nobody said it ."}\n')
    assert cli.main(["explain", str(classifier_dir), "--input", str(docs), "--json", "--steps", "8"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in records] == [7, 8] and {r["label"] for r in records} <= {"neg", "pos"}
    first = records[0]
    assert first["steps"] == 8 and isinstance(first["convergence_delta"], float)
    assert [a["word"] for a in first["attributions"]] == ["Anna", "Schmidt", "said", "the", "deal", "was", "done", "."]
    assert all(first["text"][a["start"]:a["end"]] == a["word"] for a in first["attributions"])


def test_explain_html_is_one_self_contained_page_with_the_words(ner_dir, tmp_path, capsys):
    page = tmp_path / "out" / "why.html"
    assert cli.main(["explain", str(ner_dir), "John Smith visited <Berlin> & Paris .", "--html", str(page),
                     "--steps", "8"]) == 0
    html = page.read_text()
    assert "Smith" in html and "visited" in html and "&lt;" in html and "<Berlin>" not in html   # escaped
    assert not re.search(r"<(script|link|img)\b|src=|href=|url\(", html)   # nothing from outside the file
    assert [p.name for p in page.parent.iterdir()] == ["why.html"]       # no temporary file left beside it
    assert f"page: {page}" in capsys.readouterr().err


def test_colour_only_on_a_terminal_without_no_color(ner_dir, monkeypatch):
    class Terminal:
        def isatty(self):
            return True

    from nerflow.ner.explain import load_explainer

    (e, *_) = load_explainer(ner_dir)(LONG, 8)
    assert ANSI.search(explain.text_block(e, colour=True)) and not ANSI.search(explain.text_block(e, colour=False))
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert explain.use_colour(Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not explain.use_colour(Terminal())


@pytest.mark.parametrize("args, said", [
    (["--input", "no/such/file.txt"], "no/such/file.txt: file not found"),
    (["a text", "--steps", "0"], "--steps must be at least 1"),
    ([], "nothing to explain"),
])
def test_bad_input_is_one_error_line_and_exit_2_with_nothing_written(args, said, ner_dir, tmp_path, capsys):
    page = tmp_path / "page.html"
    assert cli.main(["explain", str(ner_dir), *args, "--html", str(page)]) == cli.EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [f"error: {err.splitlines()[0].removeprefix('error: ')}"]
    assert said in err and not page.exists()
