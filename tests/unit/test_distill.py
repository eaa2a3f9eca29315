"""Distillation (nerflow.distill): the student is the teacher with fewer of its layers, the loss is the task's plus
the teacher's answers at temperature T on the scored positions only, the student learns the teacher's answers
through the task's own training loop, and an interrupted distillation resumes to exactly the uninterrupted one."""
from __future__ import annotations

import dataclasses
import functools
import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nerflow.config import TrainConfig
from nerflow.config_distill import DistillConfig
from nerflow.distill import (
    ANSWERS_FILE,
    IGNORE,
    cut_layers,
    distillation_loss_sum,
    distilled_forward,
    kept_layers,
    loop_settings,
    student_trainable,
)
from nerflow.ner.tokenization import Encoder
from nerflow.ner.training import token_loss_sum, train, trainable
from nerflow.train import fit
from nerflow.trainable import Trainable
from tests.conftest import TINY_TEXTS, build_tiny_model
from tests.unit.test_resume import CrashingWindows, final_weights, tags_of

LABELS = ["O", "B-ENT", "I-ENT"]
CFG = TrainConfig(epochs=3, batch_tokens=48, min_steps=0, checkpoint_every=3, keep_checkpoints=2, log_every=2,
                  device="cpu", precision="fp32", num_threads=1, early_stopping_patience=0, freeze="none")
META = {"labels": LABELS, "max_length": 12, "stride": 3}
SETTINGS = DistillConfig(enabled=True, layers=2, epochs=3, lr=3e-3)


def test_kept_layers_are_evenly_spread_with_the_first_and_the_last():
    assert kept_layers(3, 6) == [0, 2, 5]
    assert kept_layers(4, 6) == [0, 2, 3, 5]
    assert kept_layers(2, 12) == [0, 11]
    assert kept_layers(1, 6) == [5]
    with pytest.raises(ValueError, match="distill.layers"):
        kept_layers(7, 6)


def test_the_student_is_the_teacher_with_fewer_layers_and_loads_as_such(tmp_path):
    from transformers import AutoModelForTokenClassification

    base = build_tiny_model(tmp_path / "base", TINY_TEXTS * 4, layers=4)
    AutoModelForTokenClassification.from_pretrained(base, num_labels=3).save_pretrained(tmp_path / "teacher")
    teacher = AutoModelForTokenClassification.from_pretrained(tmp_path / "teacher").eval()
    student = cut_layers(AutoModelForTokenClassification.from_pretrained(tmp_path / "teacher").eval(), 2)
    assert len(student.bert.encoder.layer) == 2 and student.config.num_hidden_layers == 2
    for mine, theirs in zip(student.bert.encoder.layer, (teacher.bert.encoder.layer[i] for i in (0, 3))):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    student.save_pretrained(tmp_path / "student")
    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path / "student").eval()
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    assert len(loaded.bert.encoder.layer) == 2
    assert torch.allclose(loaded(input_ids=ids).logits, student(input_ids=ids).logits)


def test_the_loss_is_the_tasks_where_student_and_teacher_agree_and_reads_only_scored_positions():
    torch.manual_seed(0)
    gold = torch.tensor([[0, 1, IGNORE, 2], [IGNORE, 0, 0, IGNORE]])
    student = torch.randn(2, 4, 3)
    loss = distillation_loss_sum(token_loss_sum, 3, temperature=2.0, alpha=0.3)
    same = loss(torch.cat([student, student], -1), gold)
    assert same == pytest.approx(0.3 * float(token_loss_sum(student, gold)), rel=1e-5)   # KL(p || p) = 0
    teacher = torch.randn(2, 4, 3)
    apart = loss(torch.cat([student, teacher], -1), gold)
    scored = gold != IGNORE
    kl = F.kl_div(F.log_softmax(student[scored] / 2, -1), F.softmax(teacher[scored] / 2, -1), reduction="sum")
    assert apart == pytest.approx(0.3 * float(token_loss_sum(student, gold)) + 0.7 * 4 * float(kl), rel=1e-5)
    noise = torch.where(scored[..., None], 0.0, 50.0 * torch.randn(2, 4, 3))   # only where nothing is scored
    assert loss(torch.cat([student + noise, teacher - noise], -1), gold) == pytest.approx(float(apart), rel=1e-5)


def test_multi_label_distills_one_bernoulli_per_label():
    from nerflow.textcat.training import loss_sum as text_loss_sum

    torch.manual_seed(0)
    gold = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    task = lambda logits, labels: text_loss_sum(logits, labels, multi_label=True)   # noqa: E731
    student, teacher = torch.randn(2, 3), torch.randn(2, 3)
    loss = distillation_loss_sum(task, 3, temperature=1.0, alpha=0.5)
    assert loss(torch.cat([student, student], -1), gold) == pytest.approx(0.5 * float(task(student, gold)), abs=1e-6)
    p, q = torch.sigmoid(teacher), torch.sigmoid(student)
    kl = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean(-1).sum()
    assert loss(torch.cat([student, teacher], -1), gold) == pytest.approx(
        0.5 * float(task(student, gold)) + 0.5 * float(kl), rel=1e-4)


def test_the_teacher_answers_beside_the_student_in_training_only():
    calls = []

    class Toy(torch.nn.Module):
        def __init__(self, value: float):
            super().__init__()
            self.value = torch.nn.Parameter(torch.tensor(value))

        def forward(self, input_ids, owner=None):
            return type("Out", (), {"logits": self.value * torch.ones(input_ids.shape[0], 2)})()

    def pooled(model, batch):   # like textcat's pooled forward: it takes `owner` out of the batch
        calls.append(batch.pop("owner"))
        return model(**batch).logits

    forward = distilled_forward(pooled, lambda: Toy(5.0))
    student, batch = Toy(1.0), {"input_ids": torch.ones(3, 4), "owner": torch.tensor([0, 0, 1])}
    out = forward(student.train(), batch)
    assert out.tolist() == [[1.0, 1.0, 5.0, 5.0]] * 3 and "owner" in batch and len(calls) == 2
    assert forward(student.eval(), batch).tolist() == [[1.0, 1.0]] * 3


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A 4-layer tiny NER model trained on the planted pattern (capitalised words after the first are entities)."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("distill")
    base = build_tiny_model(root / "base", TINY_TEXTS * 20, layers=4, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    encoder = Encoder(tokenizer, max_length=12, stride=3)
    label_id = {t: i for i, t in enumerate(LABELS)}
    sentences = [t.split() for t in TINY_TEXTS]

    def encode(rows):
        return [w for i, s in enumerate(rows) for w in encoder.encode(i, s, [label_id[t] for t in tags_of(s)],
                                                                      {1: 2})]

    data = {"train": encode(sentences * 8)[:40], "val": encode(sentences), "gold": [tags_of(s) for s in sentences]}
    cfg = CFG.model_copy(update={"epochs": 8, "lr": 3e-3})
    result = train(str(base), tokenizer, LABELS, data["train"], data["val"], data["gold"], cfg, 7, root / "teacher",
                   META)
    assert result.best_f1 > 0.5, result.history    # a teacher worth learning from
    return {"dir": result.best_dir, "tokenizer": tokenizer, **data}


def job(teacher, windows=None):
    return trainable(str(teacher["dir"]), teacher["tokenizer"], LABELS, windows or teacher["train"], teacher["val"],
                     teacher["gold"], loop_settings(SETTINGS, CFG), META)


def divergence(model, teacher) -> float:
    """Mean KL(teacher || model) of the tag distributions at the validation windows' scored positions: how far
    `model`'s answers are from the teacher's."""
    from transformers import AutoModelForTokenClassification

    from nerflow.ner.predict import collate

    batch = collate(teacher["val"], 0)
    gold = batch.pop("labels")
    with torch.no_grad():
        theirs = AutoModelForTokenClassification.from_pretrained(teacher["dir"]).eval()(**batch).logits
        mine = model.eval()(**batch).logits
    scored = gold != IGNORE
    return float(F.kl_div(F.log_softmax(mine[scored], -1), F.log_softmax(theirs[scored], -1), log_target=True,
                          reduction="batchmean"))


def test_the_student_learns_the_teachers_answers_through_the_distillation_term(teacher, tmp_path):
    """Gold labels that disagree with the teacher (every word "O"): taught by the teacher alone (alpha 0) the
    student keeps the teacher's answers; taught by the gold alone (alpha 1) it drifts to the gold's. So the soft term
    is what carries the teacher's answers, at the scored positions the task's windows say."""
    from transformers import AutoModelForTokenClassification

    def headless(student):   # a cut of the tiny teacher answers almost as it does: start it from no answer at all
        model = student.load_model()
        torch.nn.init.zeros_(model.classifier.weight)
        return model

    all_o = [dataclasses.replace(w, labels=[0 if t != IGNORE else IGNORE for t in w.labels]) for w in teacher["train"]]
    students, start = {}, None
    for alpha in (0.0, 1.0):
        settings = SETTINGS.model_copy(update={"alpha": alpha})
        student = student_trainable(job(teacher, all_o), 3, settings, teacher_layers=4)
        start = divergence(headless(student), teacher)
        # the best epoch on the gold's validation would favour the drifted student: keep the last
        cfg = loop_settings(settings, CFG).model_copy(update={"checkpoint_every": 0})
        epoch = itertools.count()
        fit(dataclasses.replace(student, load_model=functools.partial(headless, student),
                                validate=functools.partial(lambda epochs, *_: {"f1": next(epochs)}, epoch)),
            cfg, 7, tmp_path / str(alpha))
        students[alpha] = AutoModelForTokenClassification.from_pretrained(tmp_path / str(alpha) / "best")
        assert students[alpha].config.num_hidden_layers == 2 and len(students[alpha].bert.encoder.layer) == 2
    taught, drifted = divergence(students[0.0], teacher), divergence(students[1.0], teacher)
    assert taught < start / 10 and taught < drifted / 10, (start, taught, drifted)


def test_an_interrupted_distillation_resumes_to_the_uninterrupted_one(teacher, tmp_path):
    cfg = loop_settings(SETTINGS, CFG)
    reference = fit(student_trainable(job(teacher), 3, SETTINGS, 4), cfg, 7, tmp_path / "ref")
    crashing = student_trainable(job(teacher, CrashingWindows(teacher["train"], steps_ok=8)), 3, SETTINGS, 4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(crashing, cfg, 7, tmp_path / "resumed")
    resumed = fit(student_trainable(job(teacher), 3, SETTINGS, 4), cfg, 7, tmp_path / "resumed")
    assert (resumed.steps, resumed.history) == (reference.steps, reference.history)
    mine, theirs = final_weights(tmp_path / "resumed"), final_weights(tmp_path / "ref")
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs), "final weights differ from the uninterrupted run"
    # another student (other layers, temperature) must not resume from these checkpoints
    other = SETTINGS.model_copy(update={"temperature": 4.0})
    with pytest.raises(ValueError, match="checkpoints"):
        fit(student_trainable(job(teacher), 3, other, 4), cfg, 7, tmp_path / "resumed")


def test_a_student_as_large_as_its_teacher_is_refused(teacher, tmp_path):
    from nerflow.distill import distill_job

    with pytest.raises(ValueError, match="distill.layers.*4 layers"):
        distill_job({"task": "token-classification", "model_path": str(teacher["dir"]),
                     "distill": SETTINGS.model_copy(update={"layers": 4}).model_dump(), "train": CFG.model_dump(),
                     "validated": str(Path(teacher["dir"])), "tokenized": "", "meta": META, "seed": 7,
                     "out_dir": str(tmp_path)})


def counting_teacher(job_: Trainable, seen: list) -> Trainable:
    """`job_` whose teacher counts the sequences it is asked about. Its load_model loads both (the student is
    its model cut to fewer layers, which its config then says): only the 4-layer model counts."""
    def count(module, args, kwargs, out):
        if module.config.num_hidden_layers == 4:
            seen.append(kwargs["input_ids"].shape[0])

    def load_teacher():
        model = job_.load_model()
        model.register_forward_hook(count, with_kwargs=True)
        return model
    return dataclasses.replace(job_, load_model=load_teacher)


def test_the_teacher_answers_each_training_example_once_and_the_student_trains_as_with_an_answer_per_batch(
        teacher, tmp_path, monkeypatch):
    """The teacher is in eval mode: its answer for an example does not change between epochs, so it is computed
    once per example (not once per batch of each of the 3 epochs), and the student trained on those answers is the
    one trained on answers computed batch by batch (to float precision: the teacher's passes pad differently)."""
    from transformers import AutoModelForTokenClassification

    from nerflow import distill

    cfg = loop_settings(SETTINGS, CFG).model_copy(update={"checkpoint_every": 0})
    seen: dict[str, list] = {"once": [], "per batch": []}
    results = {}
    for mode in ("once", "per batch"):
        if mode == "per batch":
            monkeypatch.setattr(distill, "CACHE_BYTES", 0)
        student = student_trainable(counting_teacher(job(teacher), seen[mode]), 3, SETTINGS, 4)
        results[mode] = fit(student, cfg, 7, tmp_path / mode)
    examples = len(teacher["train"])
    assert sum(seen["once"]) == examples, seen["once"]
    assert sum(seen["per batch"]) == SETTINGS.epochs * examples     # every batch of every epoch, as before
    once, per_batch = results["once"], results["per batch"]
    assert once.steps == per_batch.steps and once.best_epoch == per_batch.best_epoch
    for a, b in zip(once.history, per_batch.history):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-4) for k in a if k != "seconds"), \
            (a, b)
    mine = AutoModelForTokenClassification.from_pretrained(tmp_path / "once" / "best").state_dict()
    theirs = AutoModelForTokenClassification.from_pretrained(tmp_path / "per batch" / "best").state_dict()
    diffs = {k: float((mine[k] - theirs[k]).abs().max()) for k in theirs}
    assert max(diffs.values()) < 1e-4, sorted(diffs.items(), key=lambda kv: -kv[1])[:5]


def test_a_resumed_distillation_reads_the_teachers_answers_its_first_attempt_wrote(teacher, tmp_path, caplog):
    """The first attempt writes the teacher's answers to the work folder; the attempt that resumes after a crash
    reads them there (the teacher is asked about each example once across both attempts) and ends where the
    uninterrupted run does. A file for other examples is not used."""
    cfg = loop_settings(SETTINGS, CFG)
    reference = fit(student_trainable(job(teacher), 3, SETTINGS, 4), cfg, 7, tmp_path / "ref")
    work, seen = tmp_path / "resumed", []
    crashing = counting_teacher(job(teacher, CrashingWindows(teacher["train"], steps_ok=8)), seen)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(student_trainable(crashing, 3, SETTINGS, 4, work / ANSWERS_FILE), cfg, 7, work)
    examples = len(teacher["train"])
    assert sum(seen) == examples and (work / ANSWERS_FILE).exists()
    resumed = fit(student_trainable(counting_teacher(job(teacher), seen), 3, SETTINGS, 4, work / ANSWERS_FILE),
                  cfg, 7, work)
    assert sum(seen) == examples, "the resumed attempt asked the teacher again"
    assert (resumed.steps, resumed.history) == (reference.steps, reference.history)
    mine, theirs = final_weights(work), final_weights(tmp_path / "ref")
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs), "final weights differ from the uninterrupted run"

    fewer = job(teacher, teacher["train"][:-1])   # other examples: the saved answers are not theirs
    student = student_trainable(counting_teacher(fewer, seen), 3, SETTINGS, 4, work / ANSWERS_FILE)
    fit(student, cfg.model_copy(update={"checkpoint_every": 0}), 7, tmp_path / "fewer")
    assert sum(seen) == 2 * examples - 1 and "holds answers for other examples" in caplog.text


def test_the_cached_answers_are_the_teachers_at_every_scored_position(teacher):
    """Looked up for a training batch, the answers are what the teacher says on that batch, at every position the
    loss reads (NER: each window's labelled first sub-tokens)."""
    from transformers import AutoModelForTokenClassification

    from nerflow.distill import EXAMPLE_IDS, IndexedExamples, TeacherAnswers, indexed_collate

    task = job(teacher)
    model = AutoModelForTokenClassification.from_pretrained(teacher["dir"]).eval()
    answers = TeacherAnswers(task.examples, task.lengths, task.collate, lambda m, b: m(**b).logits)
    answers.compute(model, torch.device("cpu"))
    rows = [IndexedExamples(task.examples)[i] for i in (5, 0, 17, 3)]
    batch = indexed_collate(task.collate)(rows)
    ids, gold = batch.pop(EXAMPLE_IDS), batch.pop("labels")
    with torch.no_grad():
        direct = model(**batch).logits
    looked_up = answers(ids, direct)
    scored = gold != IGNORE
    assert scored.sum() > 10 and torch.allclose(looked_up[scored], direct[scored], atol=1e-5)


def test_the_students_rate_is_the_loops_auto_rule_for_the_student(teacher, tmp_path):
    """`distill.lr: auto` (the default): train.lr's rule for the student's own size, run length and batch, not one
    fixed rate (3e-4 suited ~42 sentences per step and was 3x too high at document context's ~8 windows)."""
    from nerflow import batching, optim

    settings = DistillConfig(enabled=True, layers=2, epochs=3)
    assert settings.lr == "auto" and loop_settings(settings, CFG).lr == "auto"
    student = student_trainable(job(teacher), 3, settings, 4)
    cfg = loop_settings(settings, CFG).model_copy(update={"checkpoint_every": 0})
    result = fit(student, cfg, 7, tmp_path)
    n_params = sum(p.numel() for p in student.load_model().parameters())
    plan = batching.plan_batches(student.lengths, 3, cfg.batch_tokens, cfg.batch_size, cfg.min_steps)
    seen = len(student.lengths) * 3
    expected = optim.default_lr(n_params, seen, seen / batching.total_steps(student.lengths, plan, 7, 3))
    assert result.lr == pytest.approx(expected) and n_params < sum(
        p.numel() for p in job(teacher).load_model().parameters())
