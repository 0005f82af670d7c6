"""`i2am <task> [hydra overrides]`: one dispatcher over Hydra; each task composes conf/<task>.yaml."""
from __future__ import annotations

import json
import os
import sys

from i2am.tasks import TASKS, get_task
from i2am.tasks.config_dirs import config_dir

TASK_ENV = "I2AM_TASK"
__all__ = ["TASK_ENV", "config_dir", "main", "usage"]


def usage() -> str:
    width = max(len(n) for n in [*TASKS, "reproduce"])
    lines = ["usage: i2am <task> [hydra overrides ...]   (i2am <task> --help for the task's config)", "", "tasks:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in TASKS.items()]
    lines += [f"  {'reproduce':<{width}}  a paper artifact: i2am reproduce <artifact> [--toy] (i2am reproduce --help)"]
    lines += ["", "examples:", "  i2am demo", "  i2am demo sampler.num_steps=20 seed=1", "  i2am demo -m seed=0,1"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    inherited = os.environ.get(TASK_ENV)   # DDP workers re-run this program without the task word (see below)
    if argv and argv[0] == "reproduce":     # paper artifacts: not a Hydra task of its own (i2am/reproduce.py)
        from i2am.reproduce import main as reproduce

        reproduce(argv[1:])
        return
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

    import hydra
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=task)
    def _run(cfg: DictConfig):
        from i2am.config_schema import validate  # imports torch: not needed by --help / --cfg, which never get here

        validate(cfg)   # wrong types and unknown keys fail here, before any data or model is loaded
        metrics = get_task(task).run(cfg)
        if metrics:
            print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}, indent=1))
        objective = cfg.get("objective")   # a sweeper (Optuna) optimises the value this returns
        if objective:
            if objective not in (metrics or {}):
                raise KeyError(f"objective={objective!r} is not among the task's metrics {sorted(metrics or {})}")
            return float(metrics[objective])
        return metrics

    sys.argv = [sys.argv[0], *argv]
    _run()


if __name__ == "__main__":
    main()
