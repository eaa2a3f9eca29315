"""What a model reads, as numbers: the profile of a batch of texts that the drift checks compare (nerflow.drift).

A profile holds, per text:

- `embeddings`: the version's own encoder (its fine-tuned weights without the task head, PyTorch fp32), the mean of
  the last layer's vectors over the text's sub-tokens (at most the first `max_length` the model was trained with);
- `descriptors`: `words` (whitespace words), `chars_per_word`, `non_letter_share` (of the non-space characters: digits,
  punctuation, symbols), `unknown_share` (of the words: those with an unknown sub-token), `split_share` (of the words:
  those cut into `HEAVY_SPLIT` or more sub-tokens), all computed with the version's tokenizer, so an uncased model's
  profile does not see case: lower-casing a batch is no drift for it, and nothing here reports it as one;
- `labels`: what the served model predicts (its runtime, as `nerflow predict` answers): the entity types found
  (NER), or the label(s) (text classification);
- `confidence`: how sure those predictions are (nerflow.task_types `answer_labels`): NaN for a text without one.

Saved as `<name>.npz` (arrays) + `<name>.json` (labels and what the profile is; the hold-out's also numbers each
text's document, no name), the form a version's reference takes in MLflow (`monitor/reference/`). Beside them,
`training.npz` + `training.json`: the descriptors alone of (at most `monitor.max_training_texts` of) the training
split's texts, by document, which the descriptor checks calibrate on with the hold-out (nerflow.drift_calibration).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

HEAVY_SPLIT = 3          # sub-tokens per word from which a word counts as heavily split
DESCRIPTORS = ("words", "chars_per_word", "non_letter_share", "unknown_share", "split_share")


def describe(texts: Sequence[str], tokenizer) -> dict[str, np.ndarray]:
    """The input descriptors of each text (module docstring)."""
    out = {name: np.zeros(len(texts)) for name in DESCRIPTORS}
    unk = tokenizer.unk_token_id
    for i, text in enumerate(texts):
        words = text.split()
        chars = [c for c in text if not c.isspace()]
        out["words"][i] = len(words)
        out["chars_per_word"][i] = len(chars) / len(words) if words else 0.0
        out["non_letter_share"][i] = sum(not c.isalpha() for c in chars) / len(chars) if chars else 0.0
        if not words:
            continue
        pieces = tokenizer(words, add_special_tokens=False)["input_ids"]
        out["unknown_share"][i] = sum(unk is not None and unk in p for p in pieces) / len(words)
        out["split_share"][i] = sum(len(p) >= HEAVY_SPLIT for p in pieces) / len(words)
    return out


def embed(texts: Sequence[str], encoder, tokenizer, max_length: int, batch_size: int = 64,
          on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Mean-pooled last-layer vectors, (n, hidden) float32; texts are batched by length (little padding)."""
    import torch

    order = sorted(range(len(texts)), key=lambda k: len(texts[k]))
    hidden = encoder.config.hidden_size
    out = np.zeros((len(texts), hidden), dtype=np.float32)
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[k] for k in rows], truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt")
            states = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[rows] = pooled.float().numpy()
            if on_batch is not None:
                on_batch(len(rows))
    return out


def load_encoder(folder: Path):
    """(encoder without its head, tokenizer, max_length) of a model folder nerflow trained."""
    from transformers import AutoModel, AutoTokenizer

    meta = json.loads((folder / "nerflow.json").read_text())
    encoder = AutoModel.from_pretrained(folder)     # the fine-tuned encoder; the head's weights are left out
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = meta.get("max_length") or min(getattr(tokenizer, "model_max_length", 512), 512)
    return encoder, tokenizer, int(max_length)


def profile_texts(texts: Sequence[str], folder: Path, predict: Callable[[list[str]], list], kind,
                  batch_size: int = 64, on_batch: Callable[[int], None] | None = None) -> dict:
    """The profile of `texts` read by the model in `folder`; `predict` is its served predictor (texts -> answers),
    `kind` its task type. `on_batch(n)` is told each time n more texts were embedded (a progress bar)."""
    texts = list(texts)
    encoder, tokenizer, max_length = load_encoder(folder)
    embeddings = embed(texts, encoder, tokenizer, max_length, batch_size, on_batch)
    labels, confidence = [], []
    for start in range(0, len(texts), batch_size):
        for answer in predict(texts[start:start + batch_size]):
            found, sure = kind.answer_labels(kind.answer_fields(answer))
            labels.append(list(found))
            confidence.append(math.nan if sure is None else float(sure))
    return {"embeddings": embeddings, "descriptors": describe(texts, tokenizer), "labels": labels,
            "confidence": np.asarray(confidence, dtype=np.float64)}


def save(profile: dict, folder: Path, name: str, about: dict) -> None:
    """`<name>.npz` and `<name>.json` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"embeddings": profile["embeddings"], "confidence": profile["confidence"],
              **{f"descriptor_{k}": v for k, v in profile["descriptors"].items()}}
    np.savez_compressed(folder / f"{name}.npz", **arrays)
    (folder / f"{name}.json").write_text(json.dumps({**about, "texts": len(profile["labels"]),
                                                     "labels": profile["labels"]}) + "\n")


def load(folder: Path, name: str) -> tuple[dict, dict]:
    """(profile, what it is) saved by `save`."""
    about = json.loads((folder / f"{name}.json").read_text())
    with np.load(folder / f"{name}.npz") as arrays:
        profile = {"embeddings": arrays["embeddings"], "confidence": arrays["confidence"],
                   "descriptors": {k.removeprefix("descriptor_"): arrays[k] for k in arrays.files
                                   if k.startswith("descriptor_")},
                   "labels": about.pop("labels")}
    return profile, about


def subset(profile: dict, rows: Sequence[int]) -> dict:
    """The profile of some of its texts (a resampled batch in the benchmark, a half of the validation split)."""
    rows = np.asarray(rows, dtype=int)
    return {"embeddings": profile["embeddings"][rows], "confidence": profile["confidence"][rows],
            "descriptors": {k: v[rows] for k, v in profile["descriptors"].items()},
            "labels": [profile["labels"][k] for k in rows]}


def split_documents(doc_ids: Sequence[str], share: float, max_texts: int, seed: int) -> tuple[list[int], list[int]]:
    """(reference rows, hold-out rows): whole documents, shuffled with `seed`, the first `share` of them (at most
    `max_texts` texts) the reference, the rest the hold-out. Sentences of one news story never straddle the two, so
    the hold-out measures false alarms on documents the reference never saw."""
    order = list(dict.fromkeys(doc_ids))
    rng = np.random.default_rng(seed)
    order = [order[k] for k in rng.permutation(len(order))]
    rows_of: dict[str, list[int]] = {}
    for row, doc in enumerate(doc_ids):
        rows_of.setdefault(doc, []).append(row)
    cut = max(1, round(share * len(order))) if len(order) > 1 else 1
    reference = [r for doc in order[:cut] for r in rows_of[doc]][:max_texts]
    held_out = [r for doc in order[cut:] for r in rows_of[doc]]
    return reference, held_out


TRAINING = "training"


def save_training(pairs: Sequence[tuple[str, str]], max_texts: int, seed: int, tokenizer, out: Path) -> int:
    """The descriptors of at most `max_texts` training texts (whole documents, shuffled with `seed`) as
    `training.npz` + `training.json` (each text's document number) in `out`; how many texts."""
    if not pairs or max_texts < 1:
        return 0
    texts, docs = zip(*pairs)
    rows, _ = split_documents(docs, 1.0, max_texts, seed)
    number = {doc: k for k, doc in enumerate(dict.fromkeys(docs[r] for r in rows))}
    described = describe([texts[r] for r in rows], tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / f"{TRAINING}.npz", **{f"descriptor_{k}": v for k, v in described.items()})
    (out / f"{TRAINING}.json").write_text(json.dumps({"part": TRAINING, "source": "training split", "texts": len(rows),
                                                      "text_documents": [number[docs[r]] for r in rows]}) + "\n")
    return len(rows)


def load_training(folder: Path) -> tuple[dict[str, np.ndarray], list[int]] | None:
    """(descriptors, document numbers) saved by `save_training`; None for a reference without them (written
    before they existed, or with `monitor.max_training_texts: 0`)."""
    if not (folder / f"{TRAINING}.npz").is_file():
        return None
    about = json.loads((folder / f"{TRAINING}.json").read_text())
    with np.load(folder / f"{TRAINING}.npz") as arrays:
        described = {k.removeprefix("descriptor_"): arrays[k] for k in arrays.files}
    return described, about["text_documents"]


def write_reference(pairs: Sequence[tuple[str, str]], monitor, seed: int, folder: Path,
                    predict: Callable[[list[str]], list], kind, out: Path,
                    on_batch: Callable[[int], None] | None = None,
                    training: Sequence[tuple[str, str]] = ()) -> dict:
    """Profile the validation texts `pairs` ((text, document) each) into `out`: `reference` and `holdout`, split by
    document with `seed` (`monitor`: the config's `monitor` section), and the descriptors of the `training` texts
    (`save_training`). What it is (the dict saved beside them)."""
    import datetime

    from nerflow.config import ConfigError
    from nerflow.two_sample import median_bandwidth

    if not pairs:
        raise ConfigError(f"data: the validation split is empty: no reference for {kind.name} drift checks")
    texts, docs = zip(*pairs)
    ref_rows, held_rows = split_documents(docs, monitor.reference_share, monitor.max_reference, seed)
    held_rows = held_rows[:monitor.max_reference]
    reference = profile_texts([texts[k] for k in ref_rows], folder, predict, kind, monitor.batch_size, on_batch)
    about = {"source": "validation split", "documents": len(set(docs)), "reference_share": monitor.reference_share,
             "seed": seed, "bandwidth": median_bandwidth(reference["embeddings"], seed=seed), "task": kind.name,
             "holdout_texts": len(held_rows),
             "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    number = {doc: k for k, doc in enumerate(dict.fromkeys(docs[r] for r in [*ref_rows, *held_rows]))}
    save(reference, out, "reference", {**about, "part": "reference",
                                       "text_documents": [number[docs[r]] for r in ref_rows]})
    if held_rows:
        save(profile_texts([texts[k] for k in held_rows], folder, predict, kind, monitor.batch_size, on_batch), out,
             "holdout", {**about, "part": "holdout", "text_documents": [number[docs[r]] for r in held_rows]})
    from transformers import AutoTokenizer

    training_texts = save_training(training, monitor.max_training_texts, seed, AutoTokenizer.from_pretrained(folder),
                                   out) if training else 0
    return {**about, "texts": len(ref_rows), "training_texts": training_texts}


def reference_from_config(cfg, folder: Path, predict: Callable[[list[str]], list], kind, out: Path,
                          on_batch: Callable[[int], None] | None = None) -> dict:
    """`write_reference` for the validation split `cfg` names, read from its data files as the validate stage reads
    them: a version registered without a reference (no `reference` stage) gets it at its first check."""
    from nerflow import task_types

    corpus = task_types.entry(cfg.task, "validate").load_corpus(cfg.data)
    texts_of = task_types.entry(cfg.task, "reference").texts_of
    return write_reference(texts_of(corpus.get("validation") or []), cfg.monitor, cfg.seed, folder, predict, kind,
                           out, on_batch, texts_of(corpus.get("train") or []))
