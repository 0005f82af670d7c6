"""Only what pyproject.toml cannot say: conf/ and experiments/ at the top level (the layout Hydra users expect)
ship inside the package as i2am/conf and i2am/experiments, so every install (editable, `pip install .`, a wheel)
carries the same configs and paper-artifact scripts."""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["i2am", "i2am.*"]), "i2am.conf", "i2am.experiments"],
    package_dir={"i2am.conf": "conf", "i2am.experiments": "experiments"},
)
