"""The VITON-HD table (docs/method.md §4.4): FID, KID, LPIPS, SSIM, IMACS_g, IMACS_r of StableVITON, DCI-VTON, the
custom model and the refined custom model, measured next to the paper's numbers.

    python experiments/vitonhd_table.py [--toy] [--make-only] [hydra overrides]  # = i2am reproduce vitonhd_table
"""
from i2am.app.reproduce import main

if __name__ == "__main__":
    main(name="vitonhd_table")
