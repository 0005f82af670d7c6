"""``model.path`` of the diffusers kinds: a local pipeline folder, or a Hugging Face hub id ``<org>/<name>`` that
diffusers resolves (``DiffusionPipeline.download``: the local cache, or a download when online) to its cached
snapshot folder, which is then read like any local folder (docs/own_images.md)."""
from __future__ import annotations

from pathlib import Path

from i2am.errors import UserFileError


def looks_like_hub_id(path: str) -> bool:
    """``<org>/<name>``: two parts a hub repository id allows (not ``~``- or ``.``-led, not absolute)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if path.count("/") != 1 or path.startswith((".", "~", "/")):
        return False
    try:
        validate_repo_id(path)
    except HFValidationError:
        return False
    return True


def _hub_id(path: str | Path) -> str:
    if not looks_like_hub_id(str(path)):
        raise UserFileError(f"model.path={path}: no such folder, and not a hub id <org>/<name>; point model.path at a "
                            f"diffusers pipeline folder (one written by save_pretrained) or give a hub id")
    return str(path)


def _download(repo_id: str, local_files_only: bool) -> Path:
    from diffusers import DiffusionPipeline
    from huggingface_hub import constants

    try:
        return Path(DiffusionPipeline.download(repo_id, local_files_only=local_files_only))
    except Exception as err:   # every way a hub lookup fails (offline, no such repo, gated) ends here
        if constants.HF_HUB_OFFLINE or local_files_only:
            raise UserFileError(
                f"model.path={repo_id}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE})"
                + (" and downloads are off (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else "")
                + f"; download it first (hf download {repo_id}, with network) or point model.path at a local "
                  f"folder") from err
        first_line = (str(err).splitlines() or [""])[0]
        raise UserFileError(f"model.path={repo_id}: the hub could not provide it ({type(err).__name__}: {first_line}); "
                            f"check the id and your access (hf auth login for gated models), or point model.path at "
                            f"a local folder") from err


def resolve_model_path(path: str | Path) -> Path:
    """The local folder ``path`` names: itself when it exists, else the snapshot of the hub id ``path`` (the cache,
    or a download when online)."""
    from huggingface_hub import constants

    folder = Path(path)
    return folder if folder.is_dir() else _download(_hub_id(path), local_files_only=constants.HF_HUB_OFFLINE)


def describe_model_path(path: str | Path) -> str:
    """The startup check: where ``path`` will be read from, without downloading anything; a hub id that is not
    cached while offline (or not an id at all) raises the error :func:`resolve_model_path` would."""
    from huggingface_hub import constants

    if Path(path).is_dir():
        return f"{path} (local folder)"
    repo_id = _hub_id(path)
    try:
        return f"{repo_id} (cached at {_download(repo_id, local_files_only=True)})"
    except UserFileError:
        if constants.HF_HUB_OFFLINE:
            raise
        return f"{repo_id} (not cached: downloaded from the hub when the model is built)"
