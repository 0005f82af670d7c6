"""One job per run label of a paper artifact (i2am.app.artifact_jobs), launched on the configured launcher.

Hydra's basic sweeper takes the cartesian product of value lists; an artifact's runs are (label, overrides) pairs
that differ in several groups at once, which a product cannot express. Hydra imports every module under
``hydra_plugins`` when it starts, so this one imports i2am only when it sweeps.
"""
from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf


class ArtifactSweeper(Sweeper):
    def __init__(self) -> None:
        self.config = None
        self.hydra_context = None
        self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]):
        from i2am.app.cli import report_user_error
        from i2am.errors import UserError

        try:
            batch = self.job_batch(arguments)
        except UserError as err:   # one paragraph and exit 2, as for a task's own errors
            report_user_error(err)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.validate_batch_is_legal(batch)   # a job that cannot compose fails here, before any job runs
        results = self.launcher.launch(batch, initial_job_idx=0)
        for result in results:
            _ = result.return_value   # raises the job's exception where it failed
        return [results]

    def job_batch(self, arguments: list[str]) -> list[list[str]]:
        from i2am.app.artifact_jobs import ArtifactRunsError, job_overrides

        parsed = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(arguments)
        swept = [override.input_line for override in parsed if override.is_sweep_override()]
        if swept:
            raise ArtifactRunsError(f"{', '.join(swept)}: an artifact's multirun is one job per label of "
                                    "artifact.runs, so it sweeps nothing else; run it once per value")
        return list(job_overrides(self.config.artifact, arguments).values())
