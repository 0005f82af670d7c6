"""A self-contained HTML page that opens from disk: inline CSS, images by paths relative to the page."""
from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from i2am.report.claims import Claim, verdict

STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; font-family: monospace; }
.held { background: #d8f0d8; } .not-held { background: #f6d6d6; } .untested { background: #eee; }
figure { display: inline-block; margin: 0.4em; } figure img { max-width: 100%; }
figcaption { font-size: 0.8em; color: #555; }
.note { font-size: 0.85em; color: #444; }
"""


def escape(value) -> str:
    return html.escape(str(value))


def format_number(value) -> str:
    if value is None:   # metrics.json stores NaN as null
        return "nan"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def key_value_table(items: Mapping[str, object]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items.items())
    return f"<table>{rows}</table>"


def metrics_table(columns: Mapping[str, Mapping[str, float]], keys: Sequence[str] | None = None,
                  labels: Mapping[str, str] | None = None) -> str:
    """Metrics as rows, runs as columns; ``keys`` picks and orders the rows (default: every key, sorted);
    ``labels`` renames rows (e.g. fid_randconv -> "FID (random-conv features, toy)")."""
    labels = labels or {}
    keys = list(keys) if keys is not None else sorted({k for m in columns.values() for k in m})
    head = "<tr><th>metric</th>" + "".join(f"<th>{escape(name)}</th>" for name in columns) + "</tr>"
    body = ""
    for key in keys:
        if not any(key in m for m in columns.values()):
            continue
        cells = "".join(f"<td class='num'>{format_number(m[key]) if key in m else '–'}</td>"
                        for m in columns.values())
        body += f"<tr><th>{escape(labels.get(key, key))}</th>{cells}</tr>"
    return f"<table>{head}{body}</table>"


def claims_table(claims: Sequence[Claim]) -> str:
    css = {True: "held", False: "not-held", None: "untested"}
    head = ("<tr><th>claim</th><th>measured</th><th>baselines</th><th>entropy</th><th>held?</th>"
            "<th>rule / note</th></tr>")
    body = "".join(
        f"<tr class='{css[c.held]}'><td>{escape(c.claim)}</td><td>{escape(c.measured)}</td>"
        f"<td>{escape(c.baselines)}</td><td>{escape(c.entropy)}</td><td><b>{verdict(c.held, c.outcome)}</b></td>"
        f"<td>{escape('; '.join(filter(None, [c.rule, c.note])))}</td></tr>" for c in claims)
    return f"<table>{head}{body}</table>"


def figures(items: Sequence[tuple[str, Path]], page_dir: Path) -> str:
    """<figure>s whose src is relative to the page's folder, so the page and its run folder can move together."""
    out = []
    for caption, path in items:
        src = Path(os.path.relpath(Path(path).resolve(), page_dir.resolve())).as_posix()
        out.append(f"<figure><img src='{escape(src)}' alt='{escape(caption)}'><figcaption>{escape(caption)}"
                   f"</figcaption></figure>")
    return "\n".join(out)


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """sections: (heading, HTML body)."""
    body = "\n".join(f"<h2>{escape(heading)}</h2>\n{content}" for heading, content in sections)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body><h1>{escape(title)}</h1>\n{body}\n</body></html>\n")
