"""conf/data/*.yaml build working DataModules with hydra.utils.instantiate; toy worlds are written on first use."""

import numpy as np
import pytest
from helpers.paths import REPO
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from i2am.data import schema
from i2am.data.layout import LayoutError

CONF = REPO / "conf" / "data"


def _datamodule(name, data_dir, **overrides):
    cfg = OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "data": OmegaConf.load(CONF / f"{name}.yaml")})
    for key, value in overrides.items():
        OmegaConf.update(cfg, f"data.{key}", value, force_add=True)
    return instantiate(cfg.data)


def test_every_data_config_names_an_existing_target():
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    names = sorted(p.stem for p in CONF.glob("*.yaml"))
    assert {"coco_detection", "cocoee", "open_images", "toy_coco", "toy_vitonhd", "vitonhd"} <= set(names)
    for name in names:
        target = OmegaConf.load(CONF / f"{name}.yaml")["_target_"]
        assert hasattr(get_class(target), "predict_dataloader"), name


def test_toy_vitonhd_is_written_on_first_use_and_batches(tmp_path):
    dm = _datamodule("toy_vitonhd", tmp_path, toy={"n_train": 2, "n_test": 3, "seed": 0}, batch_size=2)
    dm.setup("test")
    assert (tmp_path / "toy_vitonhd/test_pairs.txt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temporary folder is gone
    batch = next(iter(dm.test_dataloader()))
    assert batch[schema.IMAGE].shape == (2, 3, 128, 96) and batch[schema.CORRESPONDENCE].shape == (2, 2, 128, 96)
    assert batch[schema.INPAINT_MASK].shape == (2, 1, 128, 96) and len(batch[schema.SAMPLE_ID]) == 2
    train = _datamodule("toy_vitonhd", tmp_path, toy={"n_train": 2, "n_test": 3, "seed": 0}, split="train")
    train.setup("fit")  # reuses the written world
    assert len(train.dataset) == 2
    other = _datamodule("toy_vitonhd", tmp_path, toy={"n_train": 2, "n_test": 3, "seed": 5})
    with pytest.raises(ValueError, match="written with other arguments"):
        other.setup("test")


def test_a_missing_data_root_is_written_only_at_the_default_location_or_on_request(tmp_path):
    typo = _datamodule("toy_vitonhd", tmp_path, root=str(tmp_path / "toy_vitonhdd"),
                       toy={"n_train": 1, "n_test": 1, "seed": 0})
    with pytest.raises(FileNotFoundError) as err:
        typo.prepare_data()
    assert "data.root=" in str(err.value) and "data.create=true" in str(err.value)
    assert not list(tmp_path.iterdir())
    asked = _datamodule("toy_vitonhd", tmp_path, root=str(tmp_path / "elsewhere"), create=True,
                        toy={"n_train": 1, "n_test": 1, "seed": 0})
    asked.prepare_data()
    assert (tmp_path / "elsewhere" / "toy_world.json").is_file()
    for key in ("coco_root", "root"):   # the toy COCO and its detection set follow the same rule
        coco = _datamodule("toy_coco", tmp_path, **{key: str(tmp_path / "typo")}, toy={"n": 2, "size": [64, 64]})
        with pytest.raises(FileNotFoundError, match=f"data.{key}=.*typo does not exist"):
            coco.prepare_data()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]


def test_toy_coco_is_written_built_and_batched(tmp_path):
    dm = _datamodule("toy_coco", tmp_path, toy={"n": 12, "size": [128, 128], "seed": 0}, batch_size=2)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch[schema.IMAGE].shape == (2, 3, 128, 128) and batch[schema.REFERENCE].shape == (2, 3, 64, 64)
    assert batch[schema.BBOX].shape == (2, 4) and len(batch[schema.CATEGORY]) == 2
    assert (tmp_path / "toy_coco_detection/index.json").is_file()


def test_missing_vitonhd_fails_in_setup_naming_the_paths(tmp_path):
    dm = _datamodule("vitonhd", tmp_path)
    with pytest.raises(LayoutError, match=f"missing file {tmp_path / 'zalando-hd-resized/test_pairs.txt'}"):
        dm.setup("test")
    assert dm.dataset is None


def test_cocoee_and_open_images_configs(tmp_path):
    root = tmp_path / "cocoee"
    for folder in ("GT_3500", "Ref_3500", "Mask_bbox_3500"):
        (root / folder).mkdir(parents=True)
    np.save(root / "id_list.npy", np.array([7]))
    Image.new("RGB", (32, 32)).save(root / "GT_3500/000000000007_GT.png")
    Image.new("RGB", (16, 16)).save(root / "Ref_3500/000000000007_ref.png")
    Image.new("L", (32, 32), 255).save(root / "Mask_bbox_3500/000000000007_mask.png")
    dm = _datamodule("cocoee", tmp_path, size=[64, 64], num_workers=0)
    batch = next(iter(dm.test_dataloader()))
    assert batch[schema.INPAINT_MASK].shape == (1, 1, 64, 64) and batch[schema.SAMPLE_ID] == ["000000000007"]
    with pytest.raises(LayoutError, match="validation-annotations-bbox.csv"):
        _datamodule("open_images", tmp_path).setup("test")
