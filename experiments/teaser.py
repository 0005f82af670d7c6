"""The teaser (Fig. 1, docs/method.md §9 item 1) for StableVITON: reference garment, agnostic person and generated
image; Q1 row: R2G ULAM on the generated person and the TLAMs from t = T to t = 1; Q2 row: G2R ULAM on the garment and
its TLAMs; right: a 3x3 grid of SRAMs on the reference for the red patches of the generated grid.

    python experiments/teaser.py [--toy] [--make-only] [hydra overrides]  # = i2am reproduce teaser
"""
from i2am.app.reproduce import main

if __name__ == "__main__":
    main(name="teaser")
