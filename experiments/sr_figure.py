"""The paper's super-resolution figure (docs/method.md §5.3): PASD's G2R maps over the LR input and R2G maps over
the output, with PSNR/SSIM.

    python experiments/sr_figure.py [--toy] [--make-only] [hydra overrides]  # = i2am reproduce sr_figure
"""
from i2am.app.reproduce import main

if __name__ == "__main__":
    main(name="sr_figure")
