"""Where the repository is, for tests that read its conf/, docs/ or run its commands."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
