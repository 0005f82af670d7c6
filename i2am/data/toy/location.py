"""Where a toy world may be written: at its preset's default location or where the user asks (first use), and never
over a folder that holds something else."""
from __future__ import annotations

import json
from pathlib import Path

from i2am.errors import UserError, UserFileError


class ToyWorldError(UserError, ValueError):
    """A toy world would change a folder that holds other data or a toy world written with other arguments."""


def check_toy_location(root: str | Path, default_root: str | Path | None, create: bool, key: str = "data.root"
                       ) -> None:
    """A missing ``root`` (config key ``key``) is an error unless it is ``default_root`` or ``create`` is set: a typo
    in ``data.root`` must not silently write a new toy world there."""
    root = Path(root)
    if root.exists() or create or default_root is None or root.resolve() == Path(default_root).resolve():
        return
    raise UserFileError(f"{key}={root} does not exist. Fix the path if it is a typo, leave {key} unset for the toy "
                        f"world at {default_root}, or add data.create=true to write a new toy world at {root}.")


def check_toy_folder(root: Path, meta_file: str, wanted: dict, recorded_defaults: dict | None = None) -> bool:
    """Whether ``root`` already holds the toy world ``wanted`` (its ``meta_file`` records the same arguments, those it
    lacks taking ``recorded_defaults``); False when ``root`` is missing or empty. Any other folder is refused: it is
    never changed in place."""
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return False
    meta = root / meta_file
    if not meta.is_file():
        raise ToyWorldError(f"{root} is not empty and holds no toy world ({meta_file} missing): a toy world is never "
                            f"written over other files. Write it to another folder (CLI: data.root=<new folder> "
                            f"data.create=true) or empty {root}.")
    stored = {**(recorded_defaults or {}), **json.loads(meta.read_text())}
    differing = {k: (stored.get(k), v) for k, v in wanted.items() if stored.get(k) != v}
    if differing:
        listed = "; ".join(f"{k}: {there} there, {asked} asked for" for k, (there, asked) in differing.items())
        raise ToyWorldError(f"the toy world in {root} was written with other arguments ({listed}); it is never "
                            f"changed in place. Write to another folder (CLI: data.root=<new folder> data.create=true) "
                            f"or delete {root} to rewrite it.")
    return True
