"""The LLAM figure (docs/method.md §9 item 3): StableVITON's R2G maps at decoder cross-attention layers 2, 5 and 8
(coarse to fine), bare and as overlays, next to the input and the output.

    python experiments/llam_stableviton.py [--toy] [--make-only] [hydra overrides]  # = i2am reproduce llam_stableviton
"""
from i2am.app.reproduce import main

if __name__ == "__main__":
    main(name="llam_stableviton")
