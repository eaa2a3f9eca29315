"""The evaluate stage's NER error analysis (nerflow.ner.errors) of predictions files written by earlier runs: one
row per file, and the page. For runs made before the evaluate stage wrote `evaluation/errors.html` itself.

    python bench/error_analysis.py --train ../shared/data/conll2003/train.txt RUN1/test_predictions.conll ... \
        [--html bench/out/errors.html]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    from nerflow.ner.data import read_conll
    from nerflow.ner.errors import ERRORS, analyse, entity_strings, to_html
    from nerflow.ner.evaluate import read_predictions_conll, score

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("predictions", type=Path, nargs="+", help="<split>_predictions.conll files (token gold pred)")
    ap.add_argument("--train", type=Path, required=True, help="the training split (CoNLL) the model learnt from")
    ap.add_argument("--html", type=Path, default=None)
    args = ap.parse_args()
    train = read_conll(args.train)
    seen = entity_strings([s.tokens for s in train], [s.tags for s in train])
    analyses = []
    for path in args.predictions:
        tokens, gold, pred = read_predictions_conll(path)
        a = analyse(tokens, gold, pred, seen, str(path), path.name)
        analyses.append(a)
        kinds = " ".join(f"{k} {sum(a.kinds[k].values())}" for k in ("correct", *ERRORS))
        lengths = " / ".join(f"{v.f1:.3f}" for v in a.by_length.values())
        print(f"{path}: F1 {score(gold, pred).f1:.4f}; {kinds}; F1 seen {a.seen['seen'].f1:.4f} "
              f"({a.seen['seen'].gold}) unseen {a.seen['unseen'].f1:.4f} ({a.seen['unseen'].gold}); "
              f"by length {lengths}")
    if args.html:
        args.html.write_text(to_html(analyses, "Where the model fails"), encoding="utf-8")
        print(f"written {args.html}")


if __name__ == "__main__":
    main()
