"""The Hydra sweeper of i2am's paper artifacts (``hydra/sweeper=artifact``, chosen by conf/artifact/base.yaml)."""
