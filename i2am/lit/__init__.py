"""Lightning wrappers: DataModules (``datamodules``) and the LightningModules of attribution and training."""
