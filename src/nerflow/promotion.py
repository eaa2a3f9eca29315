"""The promotion gate: does a challenger earn the `champion` alias? Pure rules over score tables.

A score table is what the task's evaluation gives for one model on the CURRENT test split:
`{"f1": headline_f1, "per_type": {TYPE: {"precision", "recall", "f1", "support"}}, "metric": NAME}` (NER: micro F1
over entity types; text classification: macro F1 over classes; `metric` names it for the reader and may be missing:
then it reads "F1"). Both models are scored on the same gold, so a type's support (its gold count) is the same in
both tables. The caller (the promote stage)
loads and scores the models; this module only decides and explains, so every rule is unit-testable without a model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

# F1s are ratios of small integer counts; differences below this are float noise (0.8 - 0.7 != 0.1 exactly),
# and must neither break a tie nor turn "drops exactly max_type_drop" into a rejection.
_EPS = 1e-9

FLAG_TYPE_DROP = "type_drop"  # broke the per-type rule: this row rejects
FLAG_LOW_SUPPORT = "low_support_drop"  # dropped as much, but too few test entities to reject on
FLAG_NOT_SHARED = "not_shared"  # only one model knows this type: shown, not compared


# The version's `nerflow.promotion` tag in approval mode (promote.mode: approval): the gate accepted, a person decides.
# Words of their own: none is a history entry state (intended / done / abandoned) nor a gate verdict.
AWAITING, APPROVED, REJECTED = "awaiting approval", "approved", "rejected"
# In auto mode on a team whose run account may not move @champion (NERFLOW_PROMOTE_DEPLOYMENT set): the gate accepted
# and handed the move to the promote deployment, whose worker holds the promoter's credentials (tasks/approval.py).
HANDED_OVER = "accepted, handed to the promoter"


def approval_hint(name: str, version: str) -> str:
    """What to run once a version is awaiting approval."""
    return f"nerflow approve {name} {version} --reason TEXT (or nerflow reject {name} {version} --reason TEXT)"


class Refused(RuntimeError):
    """A move a rule does not allow (a rejected promotion, a rollback with nothing before it): exit code 4."""


class ScoringTimeout(RuntimeError):
    """The gate's scoring took longer than promote.score_timeout_s: nothing was decided, written or locked; exit 3
    (something it waited on did not answer). Not retried by Prefect: a step that hung once likely hangs again."""


@dataclass(frozen=True)
class GateRules:
    min_delta: float = 0.0  # challenger F1 must beat champion F1 by MORE than this (a tie keeps the champion)
    min_f1: float = 0.1  # floor: a model predicting only "O" scores 0 and fails
    min_support: int = 20  # types with fewer test entities are shown but never reject
    max_type_drop: float = 0.02  # largest F1 loss allowed on a type with support >= min_support


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: str  # one human sentence: goes on the version (`nerflow.reason`) and into the CLI output
    challenger_f1: float  # the compared figure (on shared types when shared_types is set)
    champion_f1: float | None  # None: there was no champion
    shared_types: tuple[str, ...] | None  # None when both models know the same label set
    rows: tuple[dict, ...]  # per-type comparison, see _row
    challenger_full_f1: float | None = None  # own-label-set F1s, set only for a shared-types comparison
    champion_full_f1: float | None = None
    rules: GateRules = GateRules()  # the thresholds that decided, kept with the evidence
    metric: str = "F1"  # what challenger_f1 / champion_f1 are: "micro F1" (NER), "macro F1" (text classification)

    @property
    def compared(self) -> bool:
        """Whether any scores were compared: a decision taken before scoring (a rolled-back challenger, a version
        that is already the champion) has no row and no figure worth showing."""
        return bool(self.rows)


def _f1(table: dict, who: str) -> float:
    if "f1" not in table or "per_type" not in table:
        raise ValueError(f"{who} score table needs 'f1' and 'per_type', got keys {sorted(table)}")
    return float(table["f1"])


def _prf(prefix: str, r: dict | None) -> dict:
    keys = ("precision", "recall", "f1")
    return {f"{prefix}_{k}": (None if r is None else float(r[k])) for k in keys}


def _row(etype: str, chal: dict | None, champ: dict | None, rules: GateRules, compared: bool) -> dict:
    """One table row; the flag says which rule this type broke (or why it could not)."""
    support = int(max((r.get("support", 0) for r in (chal, champ) if r is not None), default=0))
    row = {"type": etype, "support": support, **_prf("challenger", chal), **_prf("champion", champ),
           "delta_f1": None, "flag": ""}
    if not compared:
        row["flag"] = FLAG_NOT_SHARED
    elif champ is not None:
        # A type missing from the challenger's table was never found by it: F1 0.
        delta = (float(chal["f1"]) if chal is not None else 0.0) - float(champ["f1"])
        row["delta_f1"] = delta
        if -delta > rules.max_type_drop + _EPS:
            row["flag"] = FLAG_TYPE_DROP if support >= rules.min_support else FLAG_LOW_SUPPORT
    return row


def _rows(challenger: dict, champion: dict | None, rules: GateRules, compared: set[str],
          full: tuple[dict, dict | None]) -> tuple[dict, ...]:
    chal_t, champ_t = challenger["per_type"], (champion or {}).get("per_type", {})
    rows = [_row(t, chal_t.get(t), champ_t.get(t) if champion else None, rules, True) for t in sorted(compared)]
    # Types outside the comparison still get a row from the full tables, so nothing is hidden from the reader.
    full_chal, full_champ = full[0]["per_type"], (full[1] or {}).get("per_type", {})
    for t in sorted((set(full_chal) | set(full_champ)) - compared):
        rows.append(_row(t, full_chal.get(t), full_champ.get(t), rules, False))
    return tuple(rows)


def decide(challenger: dict, champion: dict | None, rules: GateRules, data_passed: bool,
           challenger_rolled_back: bool = False, restricted: tuple[dict, dict] | None = None) -> Decision:
    """Apply the gate's rules in order; the first that fails gives the reason. See GateRules for the thresholds.

    `restricted=(challenger_table, champion_table)`, the task's tables over the shared types only, is passed when
    the label sets differ; the overall and per-type comparison then use it, the floor still uses the full table.
    """
    full_f1 = _f1(challenger, "challenger")
    if champion is not None:
        _f1(champion, "champion")
    chal, champ = restricted if (restricted and champion is not None) else (challenger, champion)
    compared = set(chal["per_type"]) | set(champ["per_type"] if champ else ())
    shared: tuple[str, ...] | None = None
    if restricted and champion is not None:
        shared = tuple(sorted(set(chal.get("types", ())) | compared))
    rows = _rows(chal, champ, rules, compared, (challenger, champion))
    c_f1 = _f1(chal, "challenger (restricted)")
    k_f1 = None if champ is None else _f1(champ, "champion (restricted)")

    def done(accepted: bool, reason: str) -> Decision:
        full = (full_f1, float(champion["f1"])) if shared is not None and champion is not None else (None, None)
        return Decision(accepted, reason, c_f1, k_f1, shared, rows, full[0], full[1], rules,
                        str(challenger.get("metric", "F1")))

    if not data_passed:
        return done(False, "data validation failed: a model is never promoted on data that did not pass the checks")
    if challenger_rolled_back:
        return done(False, "this version was rolled back from champion before; the gate never re-promotes it on "
                           "its own (a person can: promote --force --reason)")
    if full_f1 < rules.min_f1 - _EPS:
        return done(False, f"test F1 {full_f1:.4f} is below the floor promote.min_f1 = {rules.min_f1:.4f}")
    if champ is None or k_f1 is None:
        return done(True, f"no champion yet; test F1 {full_f1:.4f} passes the floor {rules.min_f1:.4f}")
    return done(*_compare(c_f1, k_f1, rows, rules, shared, (full_f1, float(champion["f1"]))))


def _compare(c_f1: float, k_f1: float, rows: tuple[dict, ...], rules: GateRules,
             shared: tuple[str, ...] | None, full: tuple[float, float]) -> tuple[bool, str]:
    scope = ""
    if shared is not None:
        scope = (f"compared on the {len(shared)} shared types only ({', '.join(shared) or 'none'}); "
                 f"full label sets: challenger {full[0]:.4f}, champion {full[1]:.4f}; ")
    figures = f"challenger F1 {c_f1:.4f} vs champion F1 {k_f1:.4f}"
    delta = c_f1 - k_f1
    if abs(delta) <= _EPS:
        return False, f"{scope}tie: {figures}; a tie keeps the champion"
    if delta <= rules.min_delta + _EPS:
        return False, (f"{scope}{figures} (delta {delta:+.4f}): not better by more than "
                       f"promote.min_delta = {rules.min_delta:.4f}; the champion stays")
    drops = [r for r in rows if r["flag"] == FLAG_TYPE_DROP]
    if drops:
        worst = ", ".join(f"{r['type']} {r['champion_f1']:.4f} -> {r['challenger_f1'] or 0.0:.4f} "
                          f"({r['support']} test entities)" for r in drops)
        return False, (f"{scope}{figures} is higher overall, but F1 drops by more than promote.max_type_drop = "
                       f"{rules.max_type_drop:.4f} on a type with >= {rules.min_support} test entities: {worst}")
    return True, (f"{scope}{figures} (delta {delta:+.4f} > {rules.min_delta:.4f}); no type with >= "
                  f"{rules.min_support} test entities drops more than {rules.max_type_drop:.4f}")


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")  # entity types come from user data; a "|" would split the cell


def comparison_markdown(decision: Decision) -> str:
    """Per-type table (challenger vs champion) and the decision line, for the MLflow run and the CLI."""
    cols = ["type", "support", "challenger_precision", "challenger_recall", "challenger_f1",
            "champion_precision", "champion_recall", "champion_f1", "delta_f1", "flag"]
    heads = ["type", "support", "chal. P", "chal. R", "chal. F1", "champ. P", "champ. R", "champ. F1", "ΔF1", "flag"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in decision.rows:
        cells = [_cell(row[c]) for c in cols]
        if row["delta_f1"] is not None:
            cells[cols.index("delta_f1")] = f"{row['delta_f1']:+.4f}"  # the sign is the point of this column
        lines.append("| " + " | ".join(cells) + " |")
    scope = " (shared types only)" if decision.shared_types is not None else ""
    lines += ["", f"{_capitalised(decision.metric)}{scope}: challenger {_cell(decision.challenger_f1)}, "
                  f"champion {_cell(decision.champion_f1)}",
              "", f"**{'accepted' if decision.accepted else 'rejected'}**: {decision.reason}"]
    return "\n".join(lines) + "\n"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def decision_json(decision: Decision) -> dict:
    """JSON-ready dict (tuples become lists) with a plain `decision` word for scripts."""
    out = asdict(decision)
    out["decision"] = "accepted" if decision.accepted else "rejected"
    return out
