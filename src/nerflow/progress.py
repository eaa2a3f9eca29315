"""What a long training run shows while it runs, and how it is stopped cleanly: a progress bar (or log lines) and
the first SIGTERM / SIGINT turned into a request to stop at the next step boundary."""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from types import SimpleNamespace

log = logging.getLogger("nerflow.train")


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT arrived: a checkpoint was written at the next step boundary and training stopped there.
    `fit` called again with the same `out_dir` continues from it. Defined here, not in nerflow.train, so that the
    CLI and the flow match it by class without importing torch."""


class Progress:
    """tqdm bar with loss and throughput on a terminal; plain log lines otherwise (CI, files, Prefect workers).
    The loss shown is the newest `train/loss` point (`loss`), read from the device only every `log_every` steps.
    The throughput is this attempt's: a resumed run starts at `initial` steps, `samples` and `seconds` (what its
    checkpoint counted), and only what came after them is divided."""

    def __init__(self, total: int, every: int, initial: int = 0, samples: int = 0, seconds: float = 0.0):
        # log lines: every `every` steps, but no more than ~50 over the run (a CoNLL run has 1,000s of steps)
        self.every, self.total, self.bar, self.loss = max(every, total // 50), total, None, float("nan")
        self.before = (samples, seconds)   # the earlier attempts' share of the totals `update` is given
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def samples_per_s(self, samples: int, seconds: float) -> float:
        """Throughput of this attempt, from the run's totals so far."""
        return (samples - self.before[0]) / max(seconds - self.before[1], 1e-9)

    def update(self, step: int, samples: int, seconds: float) -> None:
        """`samples` and `seconds`: the run's totals so far (earlier attempts included)."""
        samples_per_s = self.samples_per_s(samples, seconds)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{self.loss:.4f}", samples_s=f"{samples_per_s:.1f}", refresh=False)
        elif step % self.every == 0 or step == self.total:
            log.info("step %d/%d loss %.4f %.1f samples/s", step, self.total, self.loss, samples_per_s)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class StepClock:
    """Time spent in training steps, not yet added to the run's `train_seconds`: the loop adds it at every
    checkpoint (mid-epoch ones too) and at every epoch end, and stops it around checkpoints and validation. A
    checkpoint's `train_seconds` then covers exactly the steps of its `seen_samples`, so after a resume neither the
    progress throughput nor the run's `train/samples_per_s` divides samples by a time that lacks theirs."""

    def __init__(self) -> None:
        self.since: float | None = None

    @property
    def running(self) -> bool:
        return self.since is not None

    def start(self) -> None:
        self.since = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.since if self.since is not None else 0.0

    def stop(self) -> float:
        """The seconds since `start` (0 when stopped); stopped afterwards."""
        seconds, self.since = self.elapsed(), None
        return seconds


@contextlib.contextmanager
def stop_requests():
    """While training, the first SIGTERM or SIGINT (Ctrl-C) only sets `stop.requested` (and `stop.signal`): the loop
    checkpoints at the next step boundary, then raises TrainingInterrupted. A second signal goes to the handler that
    was there before (a command line exits at once: no waiting for the checkpoint). The previous handlers are back
    afterwards. Handlers can only be installed in the main thread; elsewhere signals keep their usual effect."""
    stop = SimpleNamespace(requested=False, signal="")
    if threading.current_thread() is not threading.main_thread():
        log.debug("training runs outside the main thread: no signal handler, a pre-emption will not checkpoint")
        yield stop
        return
    watched = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.getsignal(s) for s in watched}

    def request_stop(signum, frame):
        if stop.requested:   # the second one: hand it to whoever handled it before
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
            return
        stop.requested, stop.signal = True, signal.Signals(signum).name
        log.warning("%s: stopping at the next step boundary after a checkpoint (again to stop at once)",
                    stop.signal)

    for s in watched:
        signal.signal(s, request_stop)
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
