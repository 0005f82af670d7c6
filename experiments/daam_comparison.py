"""The DAAM comparison (docs/method.md §5.4, §9 item 10): I2AM's R2G ULAM next to the T2I-style DAAM map (softmax over
the reference tokens, summed): (a) StableVITON, all patch embeddings; (b) DCI-VTON, one CLS token, where DAAM is
constant.

    python experiments/daam_comparison.py [--toy] [--make-only] [hydra overrides]  # = i2am reproduce daam_comparison
"""
from i2am.app.reproduce import main

if __name__ == "__main__":
    main(name="daam_comparison")
