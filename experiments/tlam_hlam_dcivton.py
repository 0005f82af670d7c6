"""The DCI-VTON figures (docs/method.md §9 item 4): generated image, R2G ULAM and the 8 HLAMs; generated image, R2G ULAM
and the 5 TLAMs (t = T on the left). R2G of a single-token model is shown as 1 - map, the official reading
(docs/method.md §3.6).

    python experiments/tlam_hlam_dcivton.py [--toy] [--make-only] [hydra overrides] # = i2am reproduce tlam_hlam_dcivton
"""
from i2am.app.reproduce import main

if __name__ == "__main__":
    main(name="tlam_hlam_dcivton")
