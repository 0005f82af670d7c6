"""The jobs of a paper artifact's multirun, composed the way its sweeper composes them (i2am.app.artifact_jobs)."""
from __future__ import annotations

from hydra import compose

from i2am.app.artifact_jobs import job_overrides
from i2am.app.reproduce import artifact_arguments
from i2am.report.artifacts import task_of


def artifact_job_overrides(name: str, twin: str = "real", *extra: str) -> dict[str, list[str]]:
    """label -> overrides of every job of the artifact (twin "real" or "toy"); call inside initialize_config_dir."""
    arguments = artifact_arguments(name, twin == "toy", extra)
    return job_overrides(compose(config_name=task_of(name), overrides=arguments).artifact, arguments)


def artifact_jobs(name: str, twin: str = "real", *extra: str) -> list[tuple[str, object]]:
    """[(label, composed job config with its hydra node)]; call inside initialize_config_dir."""
    return [(label, compose(config_name=task_of(name), overrides=overrides, return_hydra_config=True))
            for label, overrides in artifact_job_overrides(name, twin, *extra).items()]
