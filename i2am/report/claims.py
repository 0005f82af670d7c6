"""The claims table: each claim the demo tests, the numbers it measured, the baselines and entropy next to them, and
whether it held. ``held`` is None when a claim could not be tested (a missing stage, too few checkpoints) or when its
n cannot reach its alpha (``outcome`` = "insufficient n": never "held")."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from i2am.report.tables import markdown_table


@dataclass(frozen=True)
class Claim:
    claim: str        # what is asserted (the paper's claim, or a sanity claim of the toy world)
    measured: str     # the model numbers the verdict is based on
    baselines: str    # the same numbers for the reference points (uniform map, bounding-box mapping, ...)
    entropy: str      # attention entropy / max probability, so a collapse cannot pass for localisation
    held: bool | None
    rule: str = ""    # the exact test applied, fixed before the run
    note: str = ""    # what the verdict means at this budget
    outcome: str = ""  # the verdict when it is not held / did not hold / not tested, e.g. "insufficient n"


def verdict(held: bool | None, outcome: str = "") -> str:
    return outcome or {True: "held", False: "did not hold", None: "not tested"}[held]


def claims_markdown(claims: list[Claim]) -> str:
    """A Markdown table (also what the demo prints)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    header = ["claim", "measured", "baselines", "entropy", "held?", "rule / note"]
    rows = [[cell(c.claim), cell(c.measured), cell(c.baselines), cell(c.entropy), f"**{verdict(c.held, c.outcome)}**",
             cell("; ".join(filter(None, [c.rule, c.note])))] for c in claims]
    return markdown_table(header, rows)


def write_claims(path: str | Path, claims: list[Claim]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(c) for c in claims], indent=1))
    return path


def read_claims(path: str | Path) -> list[Claim]:
    path = Path(path)
    try:
        return [Claim(**item) for item in json.loads(path.read_text())]
    except (TypeError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a claims file written by i2am.report.claims.write_claims: {err}") from err
