"""The SRAM illustration (docs/method.md §9 item 5): StableVITON's generated image on the SRAM layer's grid (warp block
4, 32x24 at full size) with a 3x3 block of patches in red, and the reference map each of those patches draws on.

    python experiments/sram_stableviton.py [--toy] [--make-only] [hydra overrides]  # = i2am reproduce sram_stableviton
"""
from i2am.app.reproduce import main

if __name__ == "__main__":
    main(name="sram_stableviton")
