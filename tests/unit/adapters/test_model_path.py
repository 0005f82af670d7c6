"""``model.path``: a local folder is itself; ``<org>/<name>`` is a hub id; anything else is refused naming the key."""
from __future__ import annotations

import pytest

from i2am.adapters.diffusers.model_path import describe_model_path, looks_like_hub_id, resolve_model_path
from i2am.errors import UserFileError


@pytest.mark.parametrize("path,hub", [("org/name", True), ("black-forest-labs/FLUX.1-Kontext-dev", True),
                                      ("/models/sd15", False), ("./org/name", False), ("~/org", False),
                                      ("a/b/c", False), ("name", False), ("org/na me", False)])
def test_hub_ids_are_told_from_paths(path, hub):
    assert looks_like_hub_id(path) is hub


def test_a_local_folder_is_read_as_it_is_even_when_it_looks_like_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert resolve_model_path("org/name").resolve() == (tmp_path / "org" / "name").resolve()
    assert describe_model_path("org/name") == "org/name (local folder)"


def test_a_path_that_is_neither_a_folder_nor_a_hub_id_names_the_key(tmp_path):
    missing = tmp_path / "no" / "such" / "pipe"
    with pytest.raises(UserFileError, match=f"model.path={missing}: no such folder, and not a hub id"):
        resolve_model_path(missing)
