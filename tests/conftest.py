import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")   # pytest-xdist runs one worker per core: no thread oversubscription

import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
