"""Figures (matplotlib) and the self-contained HTML report; reads run folders, not trainers."""
from .build import write_report
from .claims import Claim, claims_markdown, read_claims, write_claims

__all__ = ["Claim", "claims_markdown", "read_claims", "write_claims", "write_report"]
