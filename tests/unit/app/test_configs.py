"""Every task config composes; every model and data config instantiates (full-size models on the meta device)."""

import pytest
from helpers.tasks_util import CONF, compose_task
from hydra.utils import instantiate

from i2am.app.tasks import TASKS

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_config_composes(task):
    assert (CONF / f"{task}.yaml").is_file(), f"task {task} has no conf/{task}.yaml"
    cfg = compose_task(task, [])
    assert cfg.get("task_name") == task or task == "demo"


@pytest.mark.parametrize("name", MODELS)
def test_every_model_config_instantiates(name):
    device = "cpu" if name.endswith("-tiny") else "meta"
    extra = ["model.base_model=null"] if name == "pasd" else []   # the SD-1.5 folder is loaded with real weights only
    cfg = compose_task("attribute", [f"model={name}", f"model.device={device}", "model.checkpoint=null", *extra])
    adapter = instantiate(cfg.model)
    assert adapter.name == name
    layers = adapter.attribution_layers()
    assert layers and all(hasattr(s.module, "set_processor") for s in layers)
    if device == "meta":
        assert all(p.is_meta for p in adapter.parameters())


@pytest.mark.parametrize("name", DATA)
def test_every_data_config_instantiates(name, tmp_path):
    cfg = compose_task("attribute", [f"data={name}", f"paths.data_dir={tmp_path}"])
    module = instantiate(cfg.data)
    assert hasattr(module, "predict_dataloader")


def test_model_configs_cover_the_registry():
    from i2am.adapters import list_models

    assert sorted(list_models()) == MODELS
