"""Tables for the terminal and for pipes: aligned columns, no Markdown, nothing a pipe would carry as noise.

Rendered with `rich` (already installed as a Prefect dependency): no box, two spaces between columns. On a terminal
the header is bold and a table wider than the window folds its cells inside their columns; into a pipe or a file
the text is plain (no colour codes, no box drawing), one line per row however wide, without trailing blanks, so
`grep`, `cut`, `column -t` and `head` see the rows as they are. Markdown tables stay for artifacts
(nerflow.promotion.comparison_markdown); `--json` stays for scripts.
"""
from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Container, Iterable, Sequence

NO_VALUE = "-"
UNLIMITED_WIDTH = 100_000   # a pipe has no width: a row stays one line


def cell(value: object, digits: int = 4) -> str:
    """A value as a table cell: None is "-", a float has `digits` decimals."""
    if value is None:
        return NO_VALUE
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(headers: Sequence[str], rows: Iterable[Sequence[object]], right: Container[str] = (),
           terminal: bool | None = None) -> str:
    """The table as text: `right` names the columns aligned right (numbers); cells go through `cell`.
    `terminal`: render for a terminal (default: whether stdout is one)."""
    from rich.console import Console
    from rich.table import Table

    terminal = sys.stdout.isatty() if terminal is None else terminal
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold" if terminal else None,
                  padding=(0, 2, 0, 0))
    for header in headers:
        table.add_column(header, justify="right" if header in right else "left", no_wrap=not terminal)
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    out = io.StringIO()
    # markup, emoji and highlighting off: cells hold user data ("[x]" or ":tag:" in a name stays as it is)
    console = Console(file=out, force_terminal=terminal, no_color=not terminal, markup=False, emoji=False,
                      highlight=False, width=shutil.get_terminal_size().columns if terminal else UNLIMITED_WIDTH)
    console.print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").split("\n"))


# ---------------------------------------------------------------------------------- the promotion gate's decision
FLAG_WORDS = {"type_drop": "drop: rejects", "low_support_drop": "drop: too few to reject", "not_shared": "not shared"}
CHALLENGER_COLUMNS = (("challenger_precision", "chal. P"), ("challenger_recall", "chal. R"),
                      ("challenger_f1", "chal. F1"))
CHAMPION_COLUMNS = (("champion_precision", "champ. P"), ("champion_recall", "champ. R"), ("champion_f1", "champ. F1"))


def decision_text(decision, terminal: bool | None = None) -> str:
    """A gate decision (nerflow.promotion.Decision) for `nerflow promote`: the per-type table, the compared figures
    and, when accepted, the verdict with its reason. A rejection's reason is left to the command's error line
    (exit 4), so it is said once. A decision taken without scoring (a rolled-back challenger, a version that is the
    champion already) shows no table, and says so."""
    if not decision.compared:
        said = "nothing compared: the gate decided without scoring"
        return f"{said}\naccepted: {decision.reason}" if decision.accepted else said
    with_champion = decision.champion_f1 is not None
    columns = CHALLENGER_COLUMNS + (CHAMPION_COLUMNS if with_champion else ())
    headers = ["type", "support", *(head for _, head in columns)] + (["ΔF1", "flag"] if with_champion else [])
    rows = []
    for row in decision.rows:
        delta = None if row["delta_f1"] is None else f"{row['delta_f1']:+.4f}"   # the sign is the point
        rows.append([row["type"], row["support"], *(row[key] for key, _ in columns)]
                    + ([delta, FLAG_WORDS.get(row["flag"], row["flag"])] if with_champion else []))
    scope = " (shared types only)" if decision.shared_types is not None else ""
    champion = cell(decision.champion_f1) if with_champion else "none yet"
    metric = decision.metric[:1].upper() + decision.metric[1:]   # "Micro F1", "Macro F1"
    lines = [render(headers, rows, right=set(headers[1:-1]) if with_champion else set(headers[1:]),
                    terminal=terminal),
             "", f"{metric}{scope}: challenger {cell(decision.challenger_f1)}, champion {champion}"]
    if decision.accepted:
        lines.append(f"accepted: {decision.reason}")
    return "\n".join(lines)
