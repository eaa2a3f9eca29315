"""Issue 3's check on the CoNLL-2003 benchmark: nerflow's test F1 is at least the Trainer recipe's, both measured in
the same session by bench/conll2003_nerflow.py and bench/hf_trainer_recipe.py. Prints both figures and wall times;
exits 1 when nerflow is behind.

    python bench/compare_conll.py bench/out/nerflow.json bench/out/recipe.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(nerflow_json: str, recipe_json: str) -> int:
    nerflow, recipe = (json.loads(Path(p).read_text()) for p in (nerflow_json, recipe_json))
    for name, r in (("nerflow", nerflow), ("recipe", recipe)):
        print(f"{name:8} test F1 {r['test_f1']:.4f}  train {r['train_seconds']:,.0f} s  "
              f"wall {r['wall_seconds']:,.0f} s")
    gap = nerflow["test_f1"] - recipe["test_f1"]
    print(f"nerflow - recipe: {gap:+.4f} test F1 ({'at least as high' if gap >= 0 else 'BEHIND'})")
    return 0 if gap >= 0 else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
