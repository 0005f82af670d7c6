import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")   # pytest-xdist runs one worker per core: no thread oversubscription

import pytest
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def toy_data_dir(tmp_path_factory):
    """A ``paths.data_dir`` shared by the tests that read the default toy world (conf/data/toy_vitonhd.yaml: 256 + 16
    pairs, ~5 s of CPU to write): the first run that needs it writes it, the others only read it. Runs never write
    into a data dir otherwise; a test asking for another toy world (other data.toy.* or size) must use its own
    tmp_path, since a toy world written with other arguments is refused."""
    return tmp_path_factory.mktemp("toy_data")
