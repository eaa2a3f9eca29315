"""Capturing what the model reads: the served models and `nerflow predict --flow` append their input documents to a
capture folder, which the drift check (`nerflow drift MODEL --input CAPTURE_DIR`) and the monitoring deployment read.
Plain library code: no MLflow, no Prefect (the served models carry it in their code_paths).

Opt-in only: nothing is captured, and nothing written anywhere, unless NERFLOW_CAPTURE_DIR names a folder.
Bounds: each file holds at most NERFLOW_CAPTURE_MAX_MB megabytes (default 16) and the folder keeps the newest
NERFLOW_CAPTURE_FILES files (default 8), so it never holds more than MAX_MB x FILES; when the current file would
grow past the bound a new one is started, and the oldest files beyond FILES are deleted (that is the retention: copy
files elsewhere to keep them longer). A document whose line alone is larger than the bound is not captured.

Format: JSON lines, files `capture-<UTC timestamp>-<pid>.jsonl` (the name sorts oldest first), one document a line:
`text`, `time` (UTC, ISO 8601), `source` (what read it: "serve", or the model URI for `nerflow predict --flow`) and
the document's other fields, so a capture file is valid input of `nerflow predict` and `nerflow drift`.

Captured texts are user data: the folder is created with mode 0o700 and the files with 0o600, readable by the
account that serves the model only (an existing folder keeps its mode). Several server worker processes append to
the same folder: an fcntl lock file (`.capture.lock`) is held around each append and rotation, and every chunk of
whole lines is one write on an O_APPEND file, so lines never interleave or tear and no rotation is lost (the lock
needs a local file system, not NFS). Capturing never fails a prediction: a failed write logs one warning (until a
write succeeds again) and the prediction goes on.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

# all at module level: the register stage imports this module (the served models capture), and its code identity
# counts every import, lazy or not (nerflow.code_identity); one that only a reader runs would make the two disagree
from nerflow.config import ConfigError
from nerflow.data import DataError
from nerflow.documents import decode, parse_documents

DIR_ENV = "NERFLOW_CAPTURE_DIR"
MAX_MB_ENV = "NERFLOW_CAPTURE_MAX_MB"
FILES_ENV = "NERFLOW_CAPTURE_FILES"
DEFAULT_MAX_MB = 16
DEFAULT_FILES = 8
LOCK_NAME = ".capture.lock"
STAMP = "%Y%m%dT%H%M%S.%fZ"                      # fixed width: names sort as times do
NAME = re.compile(r"^capture-(\d{8}T\d{6}\.\d{6}Z)-(\d+)\.jsonl$")
OWN_FIELDS = ("text", "time", "source")

log = logging.getLogger("nerflow.capture")


def capture_dir_from_env() -> Path | None:
    """The capture folder NERFLOW_CAPTURE_DIR names (absolute), or None when it is unset or empty."""
    value = os.environ.get(DIR_ENV, "").strip()
    return Path(value).expanduser().absolute() if value else None


def _positive(name: str, default: float, kind: type, what: str) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={raw!r}: expected {what}, e.g. {name}={default}")
    return value


def capture_from_env() -> Capture | None:
    """The Capture that NERFLOW_CAPTURE_DIR, NERFLOW_CAPTURE_MAX_MB and NERFLOW_CAPTURE_FILES ask for, or None
    (nothing captured) when NERFLOW_CAPTURE_DIR is unset or empty. A bad bound is a ConfigError naming the variable.
    Touches no file: the folder is made on the first append."""
    folder = capture_dir_from_env()
    if folder is None:
        return None
    max_mb = _positive(MAX_MB_ENV, DEFAULT_MAX_MB, float, "a positive number of megabytes per capture file")
    files = _positive(FILES_ENV, DEFAULT_FILES, int, "a positive whole number of capture files to keep")
    return Capture(folder, max(1, int(max_mb * 1024 * 1024)), int(files))


def _key(path: Path) -> tuple[str, int]:
    m = NAME.match(path.name)
    return (m.group(1), int(m.group(2))) if m else ("", 0)


def capture_files(folder: str | Path) -> list[Path]:
    """The capture files in `folder`, oldest first (other files are not capture files and are left alone)."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if NAME.match(p.name) and p.is_file()), key=_key)


def read_capture(folder: str | Path) -> list[Path]:
    """The capture files of a capture folder, oldest first: what the monitoring input reads."""
    folder = Path(folder)
    _must_exist(folder)
    return capture_files(folder)


def _must_exist(folder: Path) -> None:
    if not folder.is_dir():
        raise DataError(f"{folder}: capture folder not found (set {DIR_ENV} where the model is served)")


def read_captured_documents(folder: str | Path) -> list[dict]:
    """Every document of a capture folder, oldest first, as `nerflow predict` reads them (dicts with a string
    `text`, other fields kept); [] when nothing has been captured yet. Errors are DataErrors naming `file:line`. The
    files are read under the capture lock (when there is one to take), so a rotation cannot delete one half read,
    and a last line still being written (no newline yet) is left for the next read."""
    folder = Path(folder)
    _must_exist(folder)
    blobs: list[tuple[Path, bytes]] = []
    with _shared_lock(folder):
        for path in capture_files(folder):
            try:
                blob = path.read_bytes()
            except FileNotFoundError:
                continue
            blobs.append((path, blob[:blob.rfind(b"\n") + 1]))
    docs: list[dict] = []
    for path, blob in blobs:
        docs += parse_documents(decode(blob, str(path)), str(path))
    return docs


@contextmanager
def _shared_lock(folder: Path) -> Iterator[None]:
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:                     # no writer yet, or not ours to lock: read without it
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


class Capture:
    """Appends documents to the capture folder `folder`, at most `max_bytes` a file and `max_files` files."""

    def __init__(self, folder: str | Path, max_bytes: int, max_files: int):
        if max_bytes < 1 or max_files < 1:
            raise ValueError(f"max_bytes and max_files must be positive, not {max_bytes} and {max_files}")
        self.folder = Path(folder)
        self.max_bytes, self.max_files = int(max_bytes), int(max_files)
        self._failing = False

    def __repr__(self) -> str:
        return f"Capture({str(self.folder)!r}, max_bytes={self.max_bytes}, max_files={self.max_files})"

    def append_texts(self, texts: Iterable[str], source: str) -> int:
        return self.append([{"text": t} for t in texts], source)

    def append(self, docs: list[dict], source: str) -> int:
        """Append one JSON line per document; the number captured. Never raises: a failure logs a warning (once,
        until a capture succeeds again) and captures nothing."""
        try:
            n = self._append(docs, source)
        except Exception as e:
            if not self._failing:
                log.warning("capture to %s failed (%s: %s); predictions go on uncaptured (further failures are not "
                            "logged until a capture succeeds)", self.folder, type(e).__name__, e)
            self._failing = True
            return 0
        if self._failing:
            log.warning("capture to %s works again", self.folder)
        self._failing = False
        return n

    def _lines(self, docs: list[dict], source: str) -> list[bytes]:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines, skipped = [], 0
        for doc in docs:
            record = {"text": doc["text"], "time": now, "source": source,
                      **{k: v for k, v in doc.items() if k not in OWN_FIELDS}}
            line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
            if len(line) > self.max_bytes:
                skipped += 1
            else:
                lines.append(line)
        if skipped:
            log.warning("%d document(s) larger than a capture file (%d bytes, %s) not captured", skipped,
                        self.max_bytes, MAX_MB_ENV)
        return lines

    def _append(self, docs: list[dict], source: str) -> int:
        lines = self._lines(docs, source)
        if not lines:
            return 0
        self._make_folder()
        with self._lock():
            files = capture_files(self.folder)
            current = files[-1] if files else None
            size = current.stat().st_size if current is not None else 0
            chunk: list[bytes] = []
            for line in lines:
                if current is None or size + len(line) > self.max_bytes:
                    if chunk:
                        _write(current, b"".join(chunk))
                        chunk = []
                    current, size = self._new_file(current), 0
                chunk.append(line)
                size += len(line)
            _write(current, b"".join(chunk))
            for old in capture_files(self.folder)[:-self.max_files]:
                old.unlink(missing_ok=True)
        return len(lines)

    def _make_folder(self) -> None:
        if self.folder.is_dir():
            return
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(self.folder, 0o700)
        except FileExistsError:
            return
        os.chmod(self.folder, 0o700)          # whatever the umask

    @contextmanager
    def _lock(self) -> Iterator[None]:
        # opened per append, never shared: an flock belongs to the open file, which a fork would share
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)                      # releases the lock

    def _new_file(self, previous: Path | None) -> Path:
        stamp = datetime.now(UTC)
        if previous is not None:              # a clock stepped back must not make the new file sort first
            stamp = max(stamp, datetime.strptime(_key(previous)[0], STAMP).replace(tzinfo=UTC)
                        + timedelta(microseconds=1))
        path = self.folder / f"capture-{stamp.strftime(STAMP)}-{os.getpid()}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)              # whatever the umask
        finally:
            os.close(fd)
        return path


def _write(path: Path, data: bytes) -> None:
    """`data` (whole lines) at the end of `path` in one write; a failure part way cuts the file back, so no torn
    line stays behind for the next append to continue."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        start = os.fstat(fd).st_size
        try:
            done = os.write(fd, data)
            while done < len(data):           # a short write (a full disk): the lock keeps the rest in order
                done += os.write(fd, data[done:])
        except BaseException:
            with suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
