"""Knowledge distillation (Hinton et al. 2015) of the fine-tuned model into a student with fewer encoder layers, for
serving faster on CPUs (the `distill` stage; the export stage serves the student's int8 ONNX only when its
validation F1 is within `export.max_f1_drop` of the fine-tuned model's, nerflow.export).

The student starts as the fine-tuned model with `distill.layers` of its encoder layers kept, evenly spread with the
first and the last (layer-dropping initialisation, as DistilBERT and Sajjad et al. 2023 take layers of the
teacher), its embeddings and task head kept. It trains with the loop of `nerflow.train.fit` and the task's own
`Trainable` (its windows, batches, validation score, best epoch, checkpoints, mid-epoch resume, DDP), on the
training split, against the gold labels and the teacher's answers at once:

    loss = alpha * task loss(student, gold) + (1 - alpha) * T^2 * KL(teacher_T || student_T)

over the positions the task scores (NER's labelled first sub-tokens, a text's pooled logits); softmax at temperature
T for one label per position, one Bernoulli per label for multi-label texts. The teacher runs in eval mode without
gradients, so its answer for a training example is the same in every epoch: it is computed once per process, for
every example, at the first training step (`TeacherAnswers`; a third of a step's work on a CPU was the teacher's
forward pass), and looked up by the example's index after that. They are also written to the stage's work folder,
beside the checkpoints, so an attempt that resumes there reads them instead of asking the teacher again (5 minutes
of a CoNLL-2003 resume on 2 cores). docs/benchmarks.md ("What 3x on CoNLL-2003 would
take") has the measurements behind the defaults.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from nerflow.checkpoints import MetricsCallback
from nerflow.config_distill import DistillConfig
from nerflow.config_train import TrainConfig
from nerflow.train import fit
from nerflow.trainable import Trainable, TrainResult

log = logging.getLogger(__name__)
IGNORE = -100          # positions no loss reads (torch's cross-entropy default; NER's sub-tokens after the first)
EXAMPLE_IDS = "example_ids"   # the batch's key for its examples' indices (taken out before the model sees it)
# Above this many bytes of teacher logits (NER: every position of every training window x labels, fp32) the teacher
# answers each batch as it comes instead: CoNLL-2003 with document context needs ~65 MB.
CACHE_BYTES = 2 * 1024 ** 3
ANSWERS_FILE = "teacher-answers.pt"   # in the stage's work folder, beside checkpoints/: read by a resumed attempt


def kept_layers(n: int, of: int) -> list[int]:
    """`n` of `of` layer indices, evenly spread, the first and the last kept (3 of 6: 0, 2, 5; 4 of 6: 0, 2, 3, 5)."""
    if not 1 <= n <= of:
        raise ValueError(f"config key 'distill.layers': {n} layers asked of a model with {of}")
    return [round(i * (of - 1) / (n - 1)) for i in range(n)] if n > 1 else [of - 1]


def encoder_layers(model) -> torch.nn.ModuleList:
    """The encoder's stack of layers of a transformers model (BERT, RoBERTa, DeBERTa, ELECTRA: `encoder.layer`;
    DistilBERT: `transformer.layer`)."""
    base = model.base_model
    for holder in ("encoder", "transformer"):
        layers = getattr(getattr(base, holder, None), "layer", None)
        if isinstance(layers, torch.nn.ModuleList):
            return layers
    raise ValueError(f"distill: cannot find the encoder layers of a {type(base).__name__} "
                     f"(model_type {model.config.model_type!r}); set distill.enabled: false")


def cut_layers(model, n: int):
    """`model` with `n` of its encoder layers (`kept_layers`), in place; its config says so, so that the saved
    student loads as what it is."""
    layers = encoder_layers(model)
    kept = kept_layers(n, len(layers))
    holder = model.base_model.encoder if hasattr(model.base_model, "encoder") else model.base_model.transformer
    holder.layer = torch.nn.ModuleList(layers[i] for i in kept)
    model.config.num_hidden_layers = n   # DistilBERT's config maps the name to n_layers
    return model


def distillation_loss_sum(task_loss_sum: Callable, n_labels: int, temperature: float, alpha: float) -> Callable:
    """The loss over a batch from the student's and the teacher's logits side by side (`distilled_forward`), summed
    like the task's own (the loop divides by the global batch's targets)."""
    def loss_sum(logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        student, teacher = logits[..., :n_labels], logits[..., n_labels:]
        hard = task_loss_sum(student, gold)
        s, t = student / temperature, teacher / temperature
        if gold.is_floating_point():   # multi-label: KL of one Bernoulli per label, averaged over labels as the
            p = torch.sigmoid(t)       # task's loss is
            soft = (F.binary_cross_entropy_with_logits(s, p, reduction="none")
                    - F.binary_cross_entropy_with_logits(t, p, reduction="none")).mean(-1).sum()
        else:
            scored = gold != IGNORE
            soft = F.kl_div(F.log_softmax(s[scored], -1), F.log_softmax(t[scored], -1), log_target=True,
                            reduction="sum")
        return alpha * hard + (1 - alpha) * temperature ** 2 * soft
    return loss_sum


@dataclasses.dataclass(frozen=True)
class Indexed:
    """A training example with its index in the task's examples: the key of the teacher's answer for it."""

    index: int
    example: object


class IndexedExamples(Sequence):
    """The task's examples, each fetched with its index (one fetch of the task's sequence per item, as before)."""

    def __init__(self, examples: Sequence):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Indexed:
        return Indexed(i, self.examples[i])


def indexed_collate(collate: Callable) -> Callable:
    """The task's collate over `Indexed` examples: its batch, plus the examples' indices under EXAMPLE_IDS."""
    def collate_indexed(rows: list[Indexed], **kwargs) -> dict[str, torch.Tensor]:
        batch = collate([r.example for r in rows], **kwargs)
        batch[EXAMPLE_IDS] = torch.tensor([r.index for r in rows])
        return batch
    return collate_indexed


class TeacherAnswers:
    """The teacher's logits for every training example (`examples`, `lengths`: the task's), computed in one pass
    over them, length-sorted, at the first training step (on that step's device, under its autocast), kept on the
    CPU: per example its row (a text) or its positions (a window's tokens), fp32. `teacher(ids, like)` gives a
    batch's answers shaped like the student's logits `like` (padding positions zero: no loss reads them).

    With `file` (in the stage's work folder, whose key fixes the teacher and the examples), the answers are read
    from it when an earlier attempt wrote them for these examples' lengths, else computed and written there
    (whole or not at all: a temporary file renamed; by the first process of a data-parallel run only)."""

    def __init__(self, examples: Sequence, lengths: list[int], collate: Callable, forward: Callable,
                 file: Path | None = None):
        self.examples, self.lengths, self.collate, self.forward = examples, lengths, collate, forward
        self.file = file
        self.answers: list[torch.Tensor] | None = None

    def compute(self, teacher: torch.nn.Module, device: torch.device) -> None:
        if self._read():
            return
        self._compute(teacher, device)
        self._write()

    def _read(self) -> bool:
        if self.file is None or not self.file.exists():
            return False
        started = time.perf_counter()
        try:
            saved = torch.load(self.file, weights_only=True)
            answers, lengths = saved["answers"], saved["lengths"]
        except Exception as e:  # noqa: BLE001 - unreadable: computed again, as if it were not there
            log.warning("distill: %s is unreadable (%s): the teacher answers again", self.file, e)
            return False
        if lengths != list(self.lengths):
            log.warning("distill: %s holds answers for other examples: the teacher answers again", self.file)
            return False
        self.answers = answers
        log.info("distill: the teacher's answers for %d training examples read from %s (an earlier attempt's) "
                 "in %.1f s", len(answers), self.file, time.perf_counter() - started)
        return True

    def _write(self) -> None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if self.file is None or (distributed and torch.distributed.get_rank() != 0):
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.tmp")
        torch.save({"lengths": list(self.lengths), "answers": self.answers}, tmp)
        os.replace(tmp, self.file)

    def _compute(self, teacher: torch.nn.Module, device: torch.device) -> None:
        from nerflow.batching import PREDICT_MAX_SEQUENCES, inference_batches, predict_batch_tokens

        started = time.perf_counter()
        # iterated, not indexed: the examples are read once each, as a training epoch reads them
        examples, answers = list(self.examples), [None] * len(self.lengths)
        for ids in inference_batches(self.lengths, predict_batch_tokens(str(device)), PREDICT_MAX_SEQUENCES):
            batch = self.collate([examples[i] for i in ids])
            batch.pop("labels", None)
            with torch.no_grad():
                logits = self.forward(teacher, {k: v.to(device) for k, v in batch.items()}).float().cpu()
            for row, i in enumerate(ids):
                answers[i] = logits[row, :self.lengths[i]].clone() if logits.dim() == 3 else logits[row].clone()
        self.answers = answers
        log.info("distill: the teacher's answers for %d training examples, computed once in %.1f s",
                 len(answers), time.perf_counter() - started)

    def __call__(self, ids: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(like.shape, dtype=like.dtype)
        for row, i in enumerate(ids.tolist()):
            answer = self.answers[i]
            out[row, :answer.shape[0]] = answer
        return out.to(like.device, non_blocking=True)


def distilled_forward(base_forward: Callable | None, load_teacher: Callable[[], torch.nn.Module],
                      answers: TeacherAnswers | None = None) -> Callable:
    """In training: the student's logits and the teacher's (without gradients), concatenated on the label axis; in
    evaluation the student's alone. The teacher is loaded once, on the device of the first batch. With `answers`,
    the teacher answers every training example there, once, and each batch's answers are looked up by the indices
    under EXAMPLE_IDS; without, it answers each batch as it comes."""
    forward = base_forward or (lambda model, batch: model(**batch).logits)
    held: dict[str, torch.nn.Module] = {}

    def distilled(model, batch: dict) -> torch.Tensor:
        batch = dict(batch)   # a copy: a task's forward may pop keys (textcat's `owner`)
        ids = batch.pop(EXAMPLE_IDS, None)
        logits = forward(model, dict(batch))
        if not model.training:
            return logits
        if "teacher" not in held:
            held["teacher"] = load_teacher().to(logits.device).eval().requires_grad_(False)
            if answers is not None and ids is not None:
                answers.compute(held["teacher"], logits.device)
        if answers is not None and ids is not None:
            taught = answers(ids, logits)
        else:
            with torch.no_grad():
                taught = forward(held["teacher"], batch)
        return torch.cat([logits, taught.to(logits.dtype)], -1)
    return distilled


def student_trainable(task: Trainable, n_labels: int, settings: DistillConfig, teacher_layers: int,
                      answers_file: Path | None = None) -> Trainable:
    """The task's Trainable (loading the fine-tuned model) turned into the student's: the same examples, batches,
    validation and saving; the model cut to `settings.layers`; the distillation loss; the teacher's answers
    computed once (unless they would take more than CACHE_BYTES), and kept in `answers_file` for a resumed attempt;
    checkpoints of another student refused."""
    per_example = n_labels * 4   # fp32 logits: a text's row, or one row per position of a window
    cached = sum(task.lengths) * per_example <= CACHE_BYTES
    if not cached:
        log.info("distill: the teacher's answers would take %.1f GB: it answers each batch instead",
                 sum(task.lengths) * per_example / 1e9)
    answers = TeacherAnswers(task.examples, task.lengths, task.collate, task.forward or
                             (lambda model, batch: model(**batch).logits), answers_file) if cached else None
    return dataclasses.replace(
        task, load_model=lambda: cut_layers(task.load_model(), settings.layers),
        examples=IndexedExamples(task.examples) if cached else task.examples,
        collate=indexed_collate(task.collate) if cached else task.collate,
        forward=distilled_forward(task.forward, task.load_model, answers),
        loss_sum=distillation_loss_sum(task.loss_sum, n_labels, settings.temperature, settings.alpha),
        identity={**task.identity, "distill": {"layers": kept_layers(settings.layers, teacher_layers),
                                               "temperature": settings.temperature, "alpha": settings.alpha}})


def loop_settings(settings: DistillConfig, train: TrainConfig) -> TrainConfig:
    """The loop's settings for the student: the distill section's run length and rate; the train section's
    batches, device, precision, processes, early stopping and reporting; nothing frozen, no adapters (the
    student is a plain model cut from the merged teacher)."""
    return train.model_copy(update={"epochs": settings.epochs, "lr": settings.lr, "freeze": "none",
                                    "adapter": "none"})


def distill_job(job: dict, on_metrics: MetricsCallback | None = None, should_stop=None) -> TrainResult:
    """A job of `nerflow.launch` with a `distill` field (the stage's settings): the task's training job, with the
    fine-tuned model as `model_path`, run as the student's."""
    from transformers import AutoConfig

    from nerflow import task_types

    settings = DistillConfig.model_validate(job["distill"])
    teacher = AutoConfig.from_pretrained(job["model_path"])
    if settings.layers >= teacher.num_hidden_layers:
        raise ValueError(f"config key 'distill.layers': {settings.layers}, but the fine-tuned model has "
                         f"{teacher.num_hidden_layers} layers: a student needs fewer")
    task, cfg = task_types.entry(job["task"], "train").job_trainable(job)
    out_dir = Path(job["out_dir"])
    student = student_trainable(task, teacher.num_labels, settings, teacher.num_hidden_layers,
                                out_dir / ANSWERS_FILE)
    return fit(student, loop_settings(settings, cfg), job["seed"], out_dir, on_metrics, should_stop)
