"""The jobs of a paper artifact's multirun, read from its conf/experiment/<artifact>.yaml:

- ``artifact.runs``: label -> the overrides of that run (group choices such as ``model=dcivton`` and values);
- ``artifact.toy``: the offline twin (``artifact.twin=toy``): ``overrides`` shared by its jobs, and ``runs``, label ->
  the overrides of that toy job; the twin runs the labels of ``toy.runs`` where it names some, else every label.

A job's overrides are its run's, then the twin's (under ``artifact.twin=toy``), then the caller's arguments (so a
value given on the command line wins), then ``artifact.label=<label>``, which names its folder
(``hydra.sweep.subdir``). The sweeper hydra_plugins/i2am_artifact_sweeper launches them; `i2am reproduce` composes one.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from i2am.errors import UserError

TWINS = ("real", "toy")


class ArtifactRunsError(UserError, ValueError):
    """An artifact's runs, twin or label selection cannot make a job list."""


def _plain(node) -> dict:
    """The node as a dict without resolving interpolations: run overrides keep their ``${...}`` for each job."""
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else dict(node)


def job_overrides(artifact: Mapping, arguments: Sequence[str] = ()) -> dict[str, list[str]]:
    """label -> the overrides of that job of the artifact's multirun, in launch order."""
    name, twin = artifact.get("name"), artifact.get("twin", "real")
    if twin not in TWINS:
        raise ArtifactRunsError(f"artifact.twin={twin!r}: choose one of {', '.join(TWINS)} (toy = the offline twin)")
    runs, toy = _plain(artifact.get("runs")), _plain(artifact.get("toy"))
    if not runs:
        raise ArtifactRunsError(f"{name}: artifact.runs lists no run; add label: [overrides] to its experiment config")
    toy_runs = toy.get("runs") or {}
    labels = list(toy_runs or runs) if twin == "toy" else list(runs)
    unknown = [label for label in labels if label not in runs]
    if unknown:
        raise ArtifactRunsError(f"{name}: artifact.toy.runs names {unknown}, which artifact.runs does not list")
    chosen = artifact.get("labels")
    if chosen is not None:
        chosen = [chosen] if isinstance(chosen, str) else list(chosen)
        missing = [label for label in chosen if label not in labels]
        if missing:
            raise ArtifactRunsError(f"artifact.labels={chosen}: {name} ({twin}) has no run {missing}; its runs: "
                                    f"{', '.join(labels)}")
        labels = [label for label in labels if label in chosen]
    jobs = {}
    for label in labels:
        twin_overrides = [*(toy.get("overrides") or []), *(toy_runs.get(label) or [])] if twin == "toy" else []
        jobs[label] = [*(runs[label] or []), *twin_overrides, *arguments, f"artifact.label={label}"]
    return jobs
