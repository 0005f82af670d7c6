"""The cluster path: a multirun through the submitit launcher's local executor (the plugin code that submits to
SLURM), merged by `i2am correlate`; and the sbatch script `hydra/launcher=submitit_slurm` writes, caught by a stand-in
`sbatch` on PATH (nothing is submitted)."""
from __future__ import annotations

import json
import os
import stat

import pytest
from tasks_util import cli, toy_overrides

SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1",
         "hydra.launcher.timeout_min=240", "trainer=gpu"]     # the README's SLURM recipe


def tiny(tmp, *extra):
    return [o for o in toy_overrides(tmp, "data.limit=1", "data.batch_size=1", "num_figures=0", *extra)
            if not o.startswith(("run_dir=", "data.limit=4", "data.batch_size=2"))]


@pytest.mark.slow   # three fresh Python + torch processes side by side: minutes on 2 shared cores; .ci/run runs it
def test_submitit_local_sweep_merged_by_correlate(tmp_path):
    out = tmp_path / "out"
    proc = cli("attribute", ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=20",
                             "seed=0,1,2", f"paths.output_dir={out}", *tiny(tmp_path)], timeout=900)
    sweeps = list((out / "attribute" / "multirun").glob("*"))
    assert len(sweeps) == 1, proc.stdout[-2000:]
    jobs = sorted(p.parent for p in sweeps[0].glob("*/metrics.json"))
    assert [j.name for j in jobs] == ["0", "1", "2"], proc.stderr[-3000:]
    assert list((sweeps[0] / ".submitit").glob("*/*_result.pkl"))      # ran as submitit jobs
    # correlate needs three runs (a Pearson r of two points is always +-1)
    merged = cli("correlate", [f"runs={sweeps[0]}", f"run_dir={tmp_path / 'corr'}", "correlation.x_keys=[imacs_g]",
                               "correlation.y_keys=[loc_err]", "correlation.n_bootstrap=50"])
    rows = (tmp_path / "corr" / "correlation.csv").read_text().splitlines()
    assert rows[0].startswith("x,y") and rows[1].startswith("imacs_g,loc_err")
    assert '"n_runs": 3' in merged.stdout
    assert len({json.loads((j / "metrics.json").read_text())["imacs_g"] for j in jobs}) == 3


def test_submitit_slurm_writes_the_partition_gpus_time_limit_and_command(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    caught = tmp_path / "caught.sh"
    stand_ins = {   # sbatch keeps the script it was given and refuses, so nothing waits on a queue; srun must exist
        "sbatch": f'#!/bin/sh\ncp "$1" {caught}\necho "sbatch: stand-in, not submitting" >&2\nexit 1\n',
        "srun": "#!/bin/sh\nexit 1\n"}
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    proc = cli("attribute", ["-m", *SLURM, "seed=0", f"paths.output_dir={tmp_path / 'out'}", *tiny(tmp_path)],
               check=False, env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode != 0 and caught.is_file(), proc.stderr[-3000:]
    script = caught.read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=240"):
        assert line in script, script
    assert "-m submitit.core._submit" in script and "srun" in script
