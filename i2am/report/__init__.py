"""Figures (matplotlib) and the self-contained HTML report; reads run folders, not trainers."""
from typing import TYPE_CHECKING

from i2am.report.claims import Claim, claims_markdown, read_claims, write_claims

if TYPE_CHECKING:   # for type checkers and the API docs; at run time __getattr__ below imports it
    from i2am.report.build import write_report

__all__ = ["Claim", "claims_markdown", "read_claims", "write_claims", "write_report"]


def __getattr__(name):
    # ``write_report`` imports matplotlib and torch: load it on first use, so that i2am.report.artifacts (the artifact
    # names behind `i2am reproduce --help`) stays light.
    if name == "write_report":
        from i2am.report.build import write_report
        return write_report
    raise AttributeError(f"module 'i2am.report' has no attribute {name!r}")
