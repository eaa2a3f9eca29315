"""`nerflow explain MODEL_URI [TEXT ...] [--input FILE|-] [--html FILE] [--json] [--steps N]`: why the model
predicted each entity (NER) or label (text classification), word by word.

The model is opened as `nerflow predict` opens it (any MODEL_URI form, checked first: predict.verified_folder) and
its PyTorch weights are loaded in fp32, whatever runtime the version serves. The attributions are computed by
nerflow.explain (integrated gradients on the word embeddings; the baseline and steps are defined there) with the
task's target (nerflow.<task>.explain). docs/cli.md, "explain", has the output formats.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from nerflow.config import ConfigError


def documents(args: argparse.Namespace) -> list[dict]:
    from nerflow.documents import read_documents

    if args.input is not None and args.texts:
        raise ConfigError("give TEXT arguments or --input FILE, not both")
    if args.input is None and not args.texts:
        raise ConfigError("nothing to explain: give TEXT arguments, or --input FILE (`-` for standard input)")
    if args.steps < 1:
        raise ConfigError(f"--steps must be at least 1, not {args.steps}")
    if args.html is not None and Path(args.html).is_dir():
        raise ConfigError(f"--html {args.html}: is a folder; give the page's file name")
    return read_documents(args.input) if args.input is not None else [{"text": t} for t in args.texts]


def cmd_explain(args: argparse.Namespace) -> int:
    from nerflow import explain, task_types
    from nerflow.flows.commands.predict import model_task, verified_folder
    from nerflow.prefect_tasks import served_model

    docs = documents(args)                 # bad input fails before any model is loaded
    started = time.perf_counter()
    explained: list[explain.Explanation] = []
    colour = not args.json and explain.use_colour(sys.stdout)
    with verified_folder(args.model_uri, args.trust) as (folder, what):
        kind = model_task(folder, what)
        with served_model.quiet_loading():
            explainer = task_types.entry(kind.name, "explain").load_explainer(folder)
        bar = progress_bar(len(docs))
        try:
            for doc in docs:
                found = explainer(doc["text"], args.steps)
                for e in found:
                    e.fields = {k: v for k, v in doc.items() if k != "text"}
                with (bar.external_write_mode() if bar is not None else contextlib.nullcontext()):
                    show(doc["text"], found, args.json, colour)
                explained.extend(found)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    if args.html is not None:
        explain.write_atomically(Path(args.html), explain.html_page(explained, args.model_uri))
    deltas = [abs(e.delta) for e in explained]
    print(f"{len(explained)} explanations of {len(docs)} documents in {time.perf_counter() - started:.1f} s "
          f"({args.steps} steps); |convergence delta| mean {sum(deltas) / max(len(deltas), 1):.4f}, max "
          f"{max(deltas, default=0.0):.4f}" + (f"; page: {args.html}" if args.html else ""), file=sys.stderr)
    return 0


def show(text: str, found: list, as_json: bool, colour: bool) -> None:
    """One document's explanations on stdout (a JSON line each, or text blocks), and a warning on stderr for each
    whose convergence delta is too large."""
    from nerflow import explain

    if as_json:
        for e in found:
            sys.stdout.write(explain.json_line(e) + "\n")
    elif not found:
        sys.stdout.write(f"nothing predicted to explain: {text}\n\n")
    for e in found:
        if not as_json:
            sys.stdout.write(explain.text_block(e, colour) + "\n\n")
        if (warning := explain.delta_warning(e)) is not None:
            sys.stdout.flush()
            print(warning, file=sys.stderr)
    sys.stdout.flush()


def progress_bar(total: int):
    """A bar on stderr for more than one document, on a terminal only (a pipe or a log file gets none)."""
    if total < 2 or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="doc", dynamic_ncols=True, file=sys.stderr)


def add_parsers(sub) -> None:
    from nerflow.explain import DEFAULT_STEPS
    from nerflow.flows.commands.predict import add_document_arguments

    exp = sub.add_parser("explain", help="why the model predicted each entity or label: per-word attributions",
                         description="per-word integrated-gradients attributions for each predicted entity (NER) or "
                                     "label (text classification): coloured text on a terminal, word(+0.42) markers "
                                     "in a pipe, JSON lines with --json, a self-contained page with --html")
    add_document_arguments(exp, "explain")
    exp.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page (atomically)")
    exp.add_argument("--json", action="store_true", help="one JSON line per explanation on stdout")
    exp.add_argument("--steps", type=int, default=DEFAULT_STEPS, metavar="N",
                     help=f"integration points per explanation ({DEFAULT_STEPS}); more lowers the convergence delta")
    exp.add_argument("--trust", action="store_true",
                     help="load a model whose files nothing vouches for (as `nerflow predict --trust`)")
    exp.set_defaults(func=cmd_explain)
