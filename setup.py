"""Only what pyproject.toml cannot say: conf/ and experiments/ at the top level (the layout Hydra users expect)
ship inside the package as i2am/conf and i2am/experiments, so every install (editable, `pip install .`, a wheel)
carries the same configs and paper-artifact scripts. Config folders are namespace packages of data files."""
from setuptools import find_namespace_packages, setup

SKIP = ["*__pycache__*", "local", "local.*"]    # conf/local/: machine-specific, git-ignored


def mapped(package: str, folder: str) -> list[str]:
    return [package, *(f"{package}.{name}" for name in find_namespace_packages(where=folder, exclude=SKIP))]


setup(
    packages=[*find_namespace_packages(include=["i2am", "i2am.*"], exclude=SKIP),
              *mapped("i2am.conf", "conf"), *mapped("i2am.experiments", "experiments")],
    package_dir={"i2am.conf": "conf", "i2am.experiments": "experiments"},
)
