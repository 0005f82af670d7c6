"""`i2am <task> [hydra overrides]`: one dispatcher over Hydra; each task composes conf/<task>.yaml.

Errors: a :class:`~i2am.errors.UserError` (wrong config value, missing file, refused checkpoint or data root) is
printed as one paragraph without a traceback, exit status 2; ``I2AM_TRACEBACK=1`` raises it with its traceback. The
startup checks (``i2am.app.startup_checks.CHECKS``: config, data files, checkpoint keys, evaluators vs model) run in a
Hydra callback before Hydra creates the run folder, so a refused run writes nothing; ``i2am check <task>`` runs them
alone and reports each. A run that fails later leaves a ``FAILED`` file with its error in its run folder
(docs/runs.md).
"""
from __future__ import annotations

import json
import os
import sys

from hydra.experimental.callback import Callback

from i2am.app.renamed_keys import refuse_renamed_keys
from i2am.app.tasks import TASKS, get_task
from i2am.app.tasks.config_dirs import config_dir
from i2am.errors import TRACEBACK_ENV, UserError

TASK_ENV = "I2AM_TASK"
__all__ = ["TASK_ENV", "StartupChecks", "config_dir", "main", "usage"]


def first_set(value, fallback):
    """The ``i2am.or`` resolver: ``value`` unless it is null or empty, else ``fallback`` (conf/hydra/default.yaml)."""
    return value if value not in (None, "") else fallback


def user_error_in(err: BaseException) -> UserError | None:
    """The UserError that ``err`` is or wraps (Hydra's instantiate wraps what a ``_target_`` raises), else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def report_user_error(err: UserError) -> None:
    """Print ``err`` as one paragraph and exit 2, or re-raise it (with its traceback) under ``I2AM_TRACEBACK=1``."""
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        raise err
    task = os.environ.get(TASK_ENV, "")
    print(f"i2am {task}: error: {err}\n(Set {TRACEBACK_ENV}=1 to see the traceback.)", file=sys.stderr)
    raise SystemExit(2)


class StartupChecks(Callback):
    """Hydra callback (conf/hydra/default.yaml): the startup checks (``i2am.app.startup_checks.CHECKS``: config, data
    layout, evaluators vs model) run before Hydra creates the run folder, so a run refused at startup leaves nothing
    behind."""

    def on_run_start(self, config, **kwargs) -> None:
        from i2am.app.startup_checks import run_checks

        try:
            run_checks(config)
        except UserError as err:
            report_user_error(err)


def register_artifact_sweeper() -> None:
    """Make ``hydra/sweeper=artifact`` (conf/artifact/base.yaml) known to Hydra. Hydra finds plugins by walking the
    ``hydra_plugins`` namespace, which a PEP 660 editable install (``pip install -e``) hides from that walk although it
    imports (facebookresearch/hydra#2359); Hydra's own ``register`` works for every kind of install."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.i2am_artifact_sweeper.artifact_sweeper import ArtifactSweeper

    Plugins.instance().register(ArtifactSweeper)


def check(argv: list[str]) -> int:
    """``i2am check <task> [overrides]``: compose the task's config and run the startup checks one by one (config,
    data layout, evaluators vs model) without sampling or writing; one line per check; 0 when all pass, else 2."""
    if not argv or argv[0] not in TASKS:
        print(f"usage: i2am check <task> [hydra overrides ...]; tasks: {', '.join(TASKS)}", file=sys.stderr)
        return 2
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from i2am.app.startup_checks import report

    OmegaConf.register_new_resolver("i2am.or", first_set, replace=True)
    try:
        refuse_renamed_keys(argv[1:])
    except UserError as err:
        print(f"FAIL  overrides: {err}")
        return 2
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name=argv[0], overrides=argv[1:])
    except (HydraException, OmegaConfBaseException) as err:   # an override Hydra cannot apply (unknown option, syntax)
        print(f"FAIL  overrides: {str(err).splitlines()[0]}")
        return 2
    lines, passed = report(cfg)
    print("\n".join(lines))
    return 0 if passed else 2


def usage() -> str:
    width = max(len(n) for n in [*TASKS, "reproduce", "check"])
    lines = ["usage: i2am <task> [hydra overrides ...]   (i2am <task> --help for the task's config)", "", "tasks:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in TASKS.items()]
    lines += [f"  {'reproduce':<{width}}  a paper artifact: i2am reproduce <artifact> [--toy] (i2am reproduce --help)"]
    lines += [f"  {'check':<{width}}  the startup checks of a task, no sampling: i2am check <task> [overrides]"]
    lines += ["", "examples:", "  i2am demo", "  i2am demo sampler.num_steps=20 seed=1", "  i2am demo -m seed=0,1"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    inherited = os.environ.get(TASK_ENV)   # DDP workers re-run this program without the task word (see below)
    if argv and argv[0] == "reproduce":     # paper artifacts: not a Hydra task of its own (i2am/app/reproduce.py)
        from i2am.app.reproduce import main as reproduce

        os.environ[TASK_ENV] = "reproduce"   # names the command in a user error's line
        try:
            reproduce(argv[1:])
        except UserError as err:
            report_user_error(err)
        return
    if argv and argv[0] == "check":         # the startup checks alone (i2am/app/startup_checks.py)
        raise SystemExit(check(argv[1:]))
    if argv and argv[0] in TASKS:
        task = argv.pop(0)
    elif inherited in TASKS and not (argv and argv[0] in ("-h", "--help", "help")):
        task = inherited
    elif not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    else:
        print(f"i2am: unknown task {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    # Lightning's DDP launcher starts the other ranks as `python <this program> <sys.argv[1:]>`; Hydra reads its
    # overrides from sys.argv[1:], so the task travels in the environment instead of the command line.
    os.environ[TASK_ENV] = task
    try:
        refuse_renamed_keys(argv)
    except UserError as err:
        report_user_error(err)

    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf

    OmegaConf.register_new_resolver("i2am.or", first_set, replace=True)

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=task)
    def _run(cfg: DictConfig):
        # these import torch: not needed by --help / --cfg, which never get here
        from i2am.app.config_schema import ConfigValueError
        from i2am.app.startup_checks import run_checks
        from i2am.runs import RunDir

        run_folder = RunDir(HydraConfig.get().runtime.output_dir)
        try:
            if HydraConfig.get().mode == RunMode.MULTIRUN:   # a single run's is checked by StartupChecks already
                run_checks(cfg)
            metrics = get_task(task).run(cfg)
        except (Exception, KeyboardInterrupt) as err:
            user_error = user_error_in(err)
            run_folder.mark_failed(task, user_error or err)
            if user_error is None:
                raise
            report_user_error(user_error)
        if metrics:
            print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}, indent=1))
        objective = cfg.get("objective")   # a sweeper (Optuna) optimises the value this returns
        if objective:
            if objective not in (metrics or {}):
                report_user_error(ConfigValueError(f"objective={objective!r} is not among the task's metrics "
                                                   f"{sorted(metrics or {})}: set objective= to one of them"))
            return float(metrics[objective])
        return metrics

    register_artifact_sweeper()
    sys.argv = [sys.argv[0], *argv]
    _run()


if __name__ == "__main__":
    main()
