"""Only what pyproject.toml cannot say: conf/ at the top level (the layout Hydra users expect) ships inside the
package as i2am/conf, so every install (editable, `pip install .`, a wheel) carries the same configs; config folders
are namespace packages of data files. hydra_plugins/ holds the paper artifacts' Hydra sweeper, which Hydra finds only
in that namespace package."""
from setuptools import find_namespace_packages, setup

SKIP = ["*__pycache__*", "local", "local.*"]    # conf/local/: machine-specific, git-ignored


def mapped(package: str, folder: str) -> list[str]:
    return [package, *(f"{package}.{name}" for name in find_namespace_packages(where=folder, exclude=SKIP))]


setup(
    packages=[*find_namespace_packages(include=["i2am", "i2am.*", "hydra_plugins.*"], exclude=SKIP),
              *mapped("i2am.conf", "conf")],
    package_dir={"i2am.conf": "conf"},
)
