"""Training: the try-on LightningModule with the paper's attention losses, its callbacks, the toy Kontext trainer."""
