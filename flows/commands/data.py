"""`nerflow validate` (the data checks alone: no training, no tracking) and `nerflow make-sample` (the task type's
synthetic sample corpus, its `sample` entry)."""
from __future__ import annotations

import argparse
from pathlib import Path


def cmd_validate(args: argparse.Namespace) -> int:
    from nerflow import task_types
    from nerflow.config import load_config
    from nerflow.validation import ValidationFailed

    cfg = load_config(args.config, args.overrides)
    kind, validate = task_types.get(cfg.task), task_types.entry(cfg.task, "validate")
    corpus = validate.load_corpus(cfg.data)
    report = validate.validate_corpus(corpus, cfg.data)
    if not report.passed:
        # every problem on stdout (a pipe gets them all), the count as the one error line
        print("\n".join(report.problem_lines() + [f"warning: {w}" for w in report.warnings]), flush=True)
        raise ValidationFailed(f"{report.headline()}, listed above")
    print(report.summary())
    print("data OK: " + ", ".join(f"{split} {len(s)} {kind.unit}" for split, s in corpus.items()))
    return 0


def cmd_make_sample(args: argparse.Namespace) -> int:
    from nerflow import task_types
    from nerflow.config import ConfigError

    try:
        sample = task_types.entry(task_types.canonical(args.task), "sample")
    except (KeyError, ValueError) as e:
        raise ConfigError(f"--task {args.task}: {str(e).strip(chr(34))}") from None
    paths = sample.generate_corpus(Path(args.out_dir), seed=args.seed)
    print(f"synthetic corpus in {Path(args.out_dir)}: " + ", ".join(p.name for p in paths.values()))
    return 0


def add_parsers(sub) -> None:
    val = sub.add_parser("validate", help="run only the data checks")
    val.add_argument("config", type=Path)
    val.add_argument("overrides", nargs="*")
    val.set_defaults(func=cmd_validate)
    sample = sub.add_parser("make-sample", help="write the seeded synthetic quickstart corpus")
    sample.add_argument("out_dir", nargs="?", default="data/generated/quickstart")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--task", default=None, help="whose sample corpus (default: the default task type)")
    sample.set_defaults(func=cmd_make_sample)
