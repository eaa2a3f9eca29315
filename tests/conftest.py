"""Shared fixtures: tiny local models (random-init BERT + a WordPiece tokenizer made here) and the data path."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")            # a test must never reach for the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A shell starts a background job (`make test &`, nohup) with SIGINT ignored, and an ignored signal stays ignored in
# every program the job starts: `prefect worker start`, which sets no handler of its own, then ignored the Ctrl-C the
# team tests send it and was SIGKILLed after the grace period (30-60 s lost in full runs, none when run alone in a
# terminal). A handled signal is reset at exec, so handling it here gives every process the tests start the Ctrl-C a
# terminal would (tests/unit/test_interrupts.py).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
# Research-use data is read from ../shared (never copied into the repo); point NERFLOW_DATA elsewhere if needed.
SHARED_DATA = Path(os.environ.get("NERFLOW_DATA", ROOT.parent / "shared" / "data"))


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]   # ids 0-4, as WordPiece training puts them


def tiny_vocab(texts: list[str], vocab_size: int) -> dict[str, int] | None:
    """A WordPiece vocabulary that keeps every word of `texts` whole (after BERT's pre-tokenization: punctuation
    apart), plus every character alone and as a "##" continuation (for words it has not seen), in sorted order; None
    when that is more than vocab_size tokens. Deterministic: the tokenizers library's trainer breaks ties between
    equally frequent pairs in hash-map order, which differs between processes, so a trained vocabulary (its tokens
    and their ids, and with them the random-init model) was a different tiny model in every test session, and a test
    that needs its model to improve after epoch 1 passed in one session and failed in the next."""
    from tokenizers.pre_tokenizers import BertPreTokenizer

    split = BertPreTokenizer()
    words = {piece for text in texts for piece, _ in split.pre_tokenize_str(text)}
    chars = {c for w in words for c in w}
    tokens = [*SPECIAL_TOKENS, *sorted(chars), *sorted(f"##{c}" for c in chars),
              *sorted(w for w in words if len(w) > 1)]
    return {t: i for i, t in enumerate(tokens)} if len(tokens) <= vocab_size else None


def build_tiny_model(target: Path, texts: list[str], hidden: int = 32, layers: int = 2, vocab_size: int = 400,
                     max_positions: int = 128, **config) -> Path:
    """Random-init BERT with a WordPiece tokenizer for `texts` (tiny_vocab when the words fit in vocab_size, else
    trained on them), saved like a hub checkpoint; `config`: more BertConfig settings (e.g. no dropout)."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = tiny_vocab(texts, vocab_size)
    if vocab is not None:
        wp = BertWordPieceTokenizer(vocab, lowercase=False)
    else:
        wp = BertWordPieceTokenizer(lowercase=False)
        wp.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, show_progress=False)
    tokenizer = BertTokenizerFast(tokenizer_object=wp._tokenizer, model_max_length=max_positions,
                                  unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                                  mask_token="[MASK]", do_lower_case=False)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=max_positions,
                        **config)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


TINY_TEXTS = [
    "Maria Lopez works for Northwind Trading in New Salem .",
    "John Smith visited Berlin and Paris with Acme Corp employees .",
    "The Vortex 3000 was launched by Globex in Springfield on Monday .",
    "Nobody said anything about it .",
    "Anna Schmidt , a spokeswoman for Initech , said the deal was done .",
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), TINY_TEXTS * 20)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


# ------------------------------------------------------------------------------------------ pytest-xdist (-n 2)
# With workers (`pytest -n 2 --dist loadgroup`): each test file is one group, so module fixtures are built once; the
# team tests are one group, so one worker starts one set of team servers; and each worker (and every process it
# starts) uses one torch thread, so two workers share the two cores instead of fighting over four threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            group = "team" if "tests/team/" in item.nodeid.replace("\\", "/") else item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group(name=group))
