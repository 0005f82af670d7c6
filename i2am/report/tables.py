"""Paper-style tables of measured numbers next to the paper's: one Markdown and one CSV file."""
from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path


def cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of already formatted cells (the one writer of every table i2am prints)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_table(rows: Sequence[Mapping[str, object]], stem: str | Path, title: str = "",
                notes: Sequence[str] = ()) -> list[Path]:
    """``<stem>.md`` (title, table, notes) and ``<stem>.csv`` (raw values; empty where missing); columns are the keys
    of the rows in first-seen order."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = [f"# {title}", ""] if title else []
    lines += [markdown_table(columns, [[cell(row.get(c)) for c in columns] for row in rows])]
    lines += [""] + [f"- {note}" for note in notes]
    markdown = stem.with_suffix(".md")
    markdown.write_text("\n".join(lines) + "\n")
    table = stem.with_suffix(".csv")
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: ("" if row.get(c) is None else row.get(c)) for c in columns} for row in rows)
    return [markdown, table]
