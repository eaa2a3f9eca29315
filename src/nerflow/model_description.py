"""The registered model's description (Markdown, its MLflow page): what the model is for, and the champion history
as a table, newest move first. Pure: the caller reads the registry and writes the text (tasks/model_page.py).

Derived data, never the source of truth: the history lives in the registered model's tags (nerflow.history), and
the description is rendered again from the settled history after every move of the alias, so a description left
stale by a crash is repaired by the next command that settles or moves it. MLflow stores a description in a
5,000-character column (PostgreSQL enforces it), so the table keeps the newest moves that fit and points at
`nerflow models history` for the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

from nerflow import history

MAX_CHARS = 4900   # below MLflow's 5,000-character description column
MAX_ROWS = 25
_REASON_CHARS = 140
HEADING = "## Champion history"
DECISIONS = {"promote": "promoted by the gate", "force": "forced", "rollback": "rolled back",
             "external": "moved outside nerflow", "approve": "approved"}


@dataclass(frozen=True)
class About:
    """What a version is: read from its tags (`nerflow.task`, `nerflow.labels`, `nerflow.data_name`, `base_model`)."""

    version: str
    task: str
    labels: tuple[str, ...] = ()
    data: str | None = None
    base_model: str | None = None


def render(name: str, alias: str, about: About | None, entries: list[history.Entry]) -> str:
    """The whole description: purpose, then `## Champion history` with one row per move that happened."""
    head = _purpose(name, alias, about, entries)
    moves = list(reversed(_done(entries)))
    for rows in range(min(len(moves), MAX_ROWS), -1, -1):
        text = "\n\n".join([head, HEADING, history_table(moves[:rows], moves, name, len(moves) - rows)])
        if len(text) <= MAX_CHARS:
            return text
    return head[:MAX_CHARS]


def _done(entries: list[history.Entry]) -> list[history.Entry]:
    return sorted((e for e in entries if e.state == history.DONE), key=lambda e: e.seq)


def _purpose(name: str, alias: str, about: About | None, entries: list[history.Entry]) -> str:
    top = history.stack(entries)
    holder = f"@{alias} is version {top[-1]}." if top else f"No version is @{alias} yet."
    if about is None:
        what = f"`{name}`: a model registered by nerflow; no version yet."
    else:
        labels = ", ".join(f"`{label}`" for label in about.labels) or "(not recorded)"
        what = "\n".join([
            f"`{name}`: a {about.task} model fine-tuned and registered by nerflow (as of version {about.version}).",
            "", f"- labels: {labels}", f"- data: `{about.data or 'not recorded'}`",
            f"- base model: `{about.base_model or 'not recorded'}`"])
    return "\n".join([what, "", holder + " nerflow's gate, `nerflow approve`, `nerflow promote --force` and "
                      f"`nerflow rollback` move "
                      f"@{alias} and record why; an alias set elsewhere is recorded as moved outside nerflow at the "
                      "next nerflow command. MLflow's \"Promote model\" button copies a version into another "
                      "registered model and runs no gate."])


def history_table(rows: list[history.Entry], every: list[history.Entry], name: str, older: int) -> str:
    """A Markdown table of `rows` (newest first); `every`: all done moves, for scores recorded at earlier moves;
    `older`: how many moves are left out (a line says where to see them)."""
    if not every:
        return "No moves yet."
    lines = ["| version | when (UTC) | who | decision | test F1 | replaced | reason |",
             "|---|---|---|---|---|---|---|"]
    lines += [_row(e, every) for e in rows]
    if older:
        lines += ["", f"{older} older move{'s' if older > 1 else ''}: `nerflow models history {name}`."]
    return "\n".join(lines)


def _row(e: history.Entry, every: list[history.Entry]) -> str:
    when = e.time.replace("T", " ")[:16]
    return "| " + " | ".join([_version(e.to_version), when, _cell(e.actor, 60), _decision(e), _score(e, every),
                              _version(e.from_version), _cell(e.reason, _REASON_CHARS)]) + " |"


def _decision(e: history.Entry) -> str:
    if e.action == "external" and e.to_version is None:
        return "alias removed outside nerflow"
    return DECISIONS.get(e.action, e.action)


def _score(e: history.Entry, every: list[history.Entry]) -> str:
    """The gate's test F1 of the new champion at this move (and the champion's it beat); for a move without one
    (forced, rolled back, external), the F1 the gate measured when that version was last promoted, if ever."""
    if e.evidence.challenger_f1 is not None:
        beat = f" (vs {e.evidence.champion_f1:.4f})" if e.evidence.champion_f1 is not None else ""
        return f"{e.evidence.challenger_f1:.4f}{beat}"
    earlier = [m for m in every if m.seq < e.seq and m.to_version == e.to_version
               and m.evidence.challenger_f1 is not None]
    return f"{earlier[-1].evidence.challenger_f1:.4f} (at v{e.to_version}'s promotion)" if earlier else "—"


def _version(version: str | None) -> str:
    return f"v{version}" if version else "—"


def _cell(text: str, limit: int) -> str:
    """One table cell: no line breaks, pipes escaped, long text cut."""
    flat = " ".join(text.split())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return flat.replace("|", "\\|")
