"""`i2am reproduce <artifact> [--toy] [--make-only] [hydra overrides]`: run one paper artifact's script
(experiments/<artifact>.py, which every install carries as i2am/experiments/) from any working directory.

The script runs the artifact's runs (conf/experiment/<artifact>[-toy].yaml) and writes its table or figure under
``<paths.output_dir>/experiments/`` (``./outputs`` of the current directory unless I2AM_OUTPUT_DIR is set).
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

from .tasks.common import package_dir

NOT_ARTIFACTS = {"runner"}


def artifacts() -> dict[str, Path]:
    """artifact name -> its script, from the installed (or checked-out) experiments/ folder."""
    folder = package_dir("experiments")
    return {p.stem: p for p in sorted(folder.glob("*.py"))
            if p.stem not in NOT_ARTIFACTS and not p.stem.startswith("_")}


def usage() -> str:
    names = "\n".join(f"  {name}" for name in artifacts())
    return ("usage: i2am reproduce <artifact> [--toy] [--make-only] [hydra overrides ...]\n"
            "  --toy        the offline twin on tiny models and the toy world (minutes on a CPU)\n"
            "  --make-only  rebuild the table/figure from finished runs\n\nartifacts:\n" + names)


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    name, rest = argv[0], argv[1:]
    scripts = artifacts()
    if name not in scripts:
        print(f"i2am reproduce: unknown artifact {name!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    script = scripts[name]
    sys.path.insert(0, str(script.parent))     # the scripts share experiments/runner.py
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")
