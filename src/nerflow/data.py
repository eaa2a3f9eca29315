"""Data plumbing every task type shares: the error type whose message starts with `file:line`, UTF-8 decoding with
line numbers, line splitting, content hashes of input files, JSON-ready values. The readers are the task's
(nerflow.ner.data, nerflow.textcat.data); every data file they read goes through `read_bytes`, so
nerflow.data_identity can check that what was read is what the run was planned with."""
from __future__ import annotations

import hashlib
import numbers
import os
import re
from contextvars import ContextVar
from pathlib import Path

SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """Unusable input data; the message starts with file:line."""


def decode_utf8(raw: bytes, where: str) -> str:
    """UTF-8 text without a BOM; otherwise a DataError `where:LINE: not UTF-8 (...)`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = len(_NEWLINE.split(raw[: e.start].decode("utf-8")))
        raise DataError(f"{where}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    return text.lstrip("\ufeff")


# The ledger of nerflow.data_identity.reading(): absolute path -> sha256 of the bytes a reader read, or None when no
# ledger is open. A ContextVar, so two loads in one process (async tasks) each fill their own.
READ_LEDGER: ContextVar[dict[str, str] | None] = ContextVar("nerflow_read_ledger", default=None)
# A file read twice with different bytes in one ledger: matches no content hash, so the check names the file.
READ_TWICE_DIFFERENTLY = "read twice with different content"


def read_bytes(path: Path) -> bytes:
    """A data file's bytes, recorded in the open read ledger (if any): the hash of exactly what is decoded next."""
    raw = path.read_bytes()
    ledger = READ_LEDGER.get()
    if ledger is not None:
        key, digest = os.path.abspath(path), hashlib.sha256(raw).hexdigest()
        ledger[key] = digest if ledger.get(key, digest) == digest else READ_TWICE_DIFFERENTLY
    return raw


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text = decode_utf8(read_bytes(path), str(path))
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    return text


# Only \n, \r\n and \r end a line: str.splitlines() also splits at U+2028, U+0085, \x0c, ... which can occur inside
# tokens (and raw inside JSON strings), giving wrong line numbers and broken lines.
_NEWLINE = re.compile(r"\r\n|\r|\n")


def _lines(text: str) -> list[str]:
    return _NEWLINE.split(text)


def hash_files(paths: list[Path]) -> str:
    """Content hash of input files: renaming or touching a file changes nothing, one changed byte changes it."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.stat().st_size.to_bytes(8, "little"))  # length prefix: no two file lists hash alike
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def plain(value: object) -> object:
    """numpy scalars -> float/int, so a report dict goes straight into json.dump / mlflow.log_dict."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):   # numpy's integers register here
        return int(value)
    return float(value)  # type: ignore[arg-type]
