"""Leaderboard cells as text for Markdown, LaTeX (booktabs) and HTML: one layout,
three markups. Numbers come from ``Board.cells``; nothing is recomputed here."""

from __future__ import annotations

import html
import math
from typing import Literal

import pandas as pd

from faithbench.report.board import Board

Markup = Literal["md", "tex", "html"]
ARROW = {"md": ("↑", "↓"), "html": ("↑", "↓"), "tex": (r"$\uparrow$", r"$\downarrow$")}


def num(x: float, digits: int) -> str:
    """A number with ``digits`` decimals; "–" for NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
       "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def esc(text: str, markup: Markup) -> str:
    """Plain text made safe for the markup."""
    if markup == "tex":
        return "".join(TEX.get(ch, ch) for ch in text)
    if markup == "html":
        return html.escape(text)
    return text.replace("|", r"\|")


def bold(text: str, markup: Markup) -> str:
    return {"md": f"**{text}**", "tex": rf"\textbf{{{text}}}", "html": f"<b>{text}</b>"}[markup]


def small(text: str, markup: Markup) -> str:
    return {"md": text, "tex": rf"{{\scriptsize {text}}}", "html": f"<small>{text}</small>"}[markup]


def leaderboard(b: Board, win: pd.Series, digits: int, markup: Markup,
                controls: set[str] | None = None,
                below: dict[str, list[str]] | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of one leaderboard: method, n, one column per shown output
    ("mean [CI low, CI high] (rank)", best in bold, arrow = direction), Win % when
    computed, "beats controls" when the board has controls ("control" for a control,
    "yes", or "no: " and the outputs on which it does not beat them), mean rank (best
    in bold)."""
    up, down = ARROW[markup]
    header = ["method", "n"]
    for k in b.shown:
        header.append(f"{esc(k, markup)} {up if b.info(k).higher_is_better else down}")
    if len(win):
        header.append(f"{esc('win %', markup)} {up}")
    if controls:
        header.append("beats controls")
    header.append(f"mean rank {down}")
    cells = cell_records(b)
    best_rank = b.rows["mean_rank"].min()
    rows = []
    for r in b.rows.to_dict("records"):
        line = [esc(r["label"], markup), str(int(r["n_samples"]))]
        for k in b.shown:
            if (r["label"], k) not in cells:
                line.append("–")
                continue
            c = cells[(r["label"], k)]
            mean = num(c["mean"], digits)
            mean = bold(mean, markup) if c["best"] else mean
            ci = small(f"[{num(c['ci_low'], digits)}, {num(c['ci_high'], digits)}]", markup)
            rank = "" if math.isnan(c["rank"]) else f" ({c['rank']:g})"
            if markup == "tex":  # two lines in one cell: the table stays narrow
                line.append(rf"\begin{{tabular}}[c]{{@{{}}r@{{}}}}{mean}{rank}\\ {ci}\end{{tabular}}")
            else:
                line.append(f"{mean} {ci}{rank}")
        if len(win):
            w = win.get(r["label"], float("nan"))
            txt = num(w, 1)
            line.append(bold(txt, markup) if w == win.max() else txt)
        if controls:
            line.append(beats(r["label"], controls, below or {}, markup))
        mr = num(r["mean_rank"], 2)
        line.append(bold(mr, markup) if r["mean_rank"] == best_rank else mr)
        rows.append(line)
    return header, rows


def cell_records(b: Board) -> dict[tuple[str, str], dict]:
    """(label, key) -> that cell's row of ``b.cells`` as a dict (one lookup per table
    cell instead of a pandas ``.loc``)."""
    return {(c["label"], c["key"]): c for c in b.cells.to_dict("records")}


def beats(label: str, controls: set[str], below: dict[str, list[str]], markup: Markup) -> str:
    """The "beats controls" cell of one method row."""
    if label in controls:
        return "control"
    if label in below:
        return bold(esc("no: " + ", ".join(below[label]), markup), markup)
    return "yes"


def numeric(rows: list[list[str]], j: int) -> bool:
    """Whether column ``j`` holds numbers (right-aligned)."""
    import re

    cell = re.compile(r"^(\*\*)?[-+]?[0-9.]+(e[-+][0-9]+)?(\*\*)?( .*)?$|^–$")
    return all(cell.match(r[j]) for r in rows)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---:" if j and numeric(rows, j) else "---" for j in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def latex_tabular(header: list[str], rows: list[list[str]]) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    spec = "l" + "r" * (len(header) - 1)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\",
             r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]], cls: str = "board",
               metrics: list[str] | None = None) -> str:
    """An HTML table; text columns are left-aligned, numbers right-aligned. With
    ``metrics`` (one per row), each row carries its metric for the page's filter."""
    left = [j == 0 or not numeric(rows, j) for j in range(len(header))]
    td = ['<td class="t">' if lf else "<td>" for lf in left]
    head = "".join(f'<th class="t">{h}</th>' if lf else f"<th>{h}</th>" for h, lf in zip(header, left))
    tr = [f'<tr data-metric="{html.escape(m)}">' for m in metrics] if metrics else ["<tr>"] * len(rows)
    body = "".join(tr[i] + "".join(f"{td[j]}{c}</td>" for j, c in enumerate(r)) + "</tr>"
                   for i, r in enumerate(rows))
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def frame_rows(df: pd.DataFrame, digits: int, markup: Markup) -> tuple[list[str], list[list[str]]]:
    """Any small result table (tests, reliability, published) as (header, rows)."""
    header = [esc(str(c), markup) for c in df.columns]
    rows = []
    for values in df.to_numpy():  # the rows ``iterrows`` yields, without a Series per row
        line = []
        for c, v in zip(df.columns, values):
            if isinstance(v, (bool,)) or type(v).__name__ == "bool_":
                line.append("yes" if v else "no")
            elif (c == "n" or c.startswith("n_")) and isinstance(v, (int, float)) and v == v:
                line.append(str(int(v)))
            elif isinstance(v, float):
                line.append(_pnum(v, digits) if c in ("p", "p_adj") else num(v, digits))
            else:
                line.append(esc(str(v), markup))
        rows.append(line)
    return header, rows


def _pnum(p: float, digits: int) -> str:
    """p-values: fixed decimals, or scientific notation below 10^-digits."""
    if math.isnan(p):
        return "–"
    return f"{p:.{digits}f}" if p >= 10 ** -digits else f"{p:.1e}"
