"""The debugging figure (docs/method.md §5.5, §9 item 11): garment, custom and refined custom outputs, and per model the
SRAMs of two generated patches at decoder layer 2 (the pixelated generated grid with the patches in red, then the
reference map of each). Spread-out SRAMs are what the paper diagnosed as colour inconsistency; the refined model's
should be concentrated.

    python experiments/debugging_custom.py [--toy] [--make-only] [hydra overrides]  # = i2am reproduce debugging_custom
"""
from i2am.app.reproduce import main

if __name__ == "__main__":
    main(name="debugging_custom")
