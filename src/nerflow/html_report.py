"""Self-contained HTML pages for run artifacts (no script, no outside file: an MLflow artifact view or a browser
opened on the downloaded file shows the same page). Every argument is plain text and escaped here, except `body`
parts, which are HTML built with these helpers."""
from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

STYLE = ("body{font:14px sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0 1.5em}"
         "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}th:first-child,td:first-child"
         "{text-align:left}.gold{text-decoration:underline 2px #2a7}.predicted{background:#fd8}"
         "li{margin:.3em 0}code{color:#555}")


def esc(text: object) -> str:
    return html.escape(str(text))


def cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else esc(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A table of plain values (floats shown with 4 decimals)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, intro_html: str, body: Iterable[str]) -> str:
    return (f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title><style>{STYLE}</style>\n"
            f"<h1>{esc(title)}</h1><p>{intro_html}</p>\n" + "\n".join(body) + "\n")
