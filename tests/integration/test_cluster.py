"""The cluster path: a multirun through the submitit launcher's local executor, and one through
`hydra/launcher=submitit_slurm` on a real SLURM cluster (`make cluster-up` starts one on localhost); each merged by
`i2am correlate`."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from helpers.tasks_util import cli, toy_overrides

PARTITION = os.environ.get("I2AM_SLURM_PARTITION", "cpu")   # the CPU partition of .ci/cluster.sh


def tiny(tmp, *extra):
    return [o for o in toy_overrides(tmp, "data.limit=1", "data.batch_size=1", "num_figures=0", *extra)
            if not o.startswith(("run_dir=", "data.limit=4", "data.batch_size=2"))]


def merged_correlation(tmp, sweep, jobs):
    # correlate needs three runs (a Pearson r of two points is always +-1)
    merged = cli("correlate", [f"runs={sweep}", f"run_dir={tmp / 'corr'}", "correlation.x_keys=[imacs_g]",
                               "correlation.y_keys=[loc_err]", "correlation.n_bootstrap=50"])
    rows = (tmp / "corr" / "correlation.csv").read_text().splitlines()
    assert rows[0].startswith("x,y") and rows[1].startswith("imacs_g,loc_err")
    assert '"n_runs": 3' in merged.stdout
    assert len({json.loads((j / "metrics.json").read_text())["imacs_g"] for j in jobs}) == 3


def finished_jobs(out):
    sweeps = list((out / "attribute" / "multirun").glob("*"))
    assert len(sweeps) == 1, sweeps
    return sweeps[0], sorted(p.parent for p in sweeps[0].glob("*/metrics.json"))


@pytest.mark.slow   # three fresh Python + torch processes side by side: minutes on 2 shared cores; .ci/run runs it
def test_submitit_local_sweep_merged_by_correlate(tmp_path):
    out = tmp_path / "out"
    proc = cli("attribute", ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=20",
                             "seed=0,1,2", f"paths.output_dir={out}", *tiny(tmp_path)], timeout=900)
    sweep, jobs = finished_jobs(out)
    assert [j.name for j in jobs] == ["0", "1", "2"], proc.stderr[-3000:]
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))      # ran as submitit jobs
    merged_correlation(tmp_path, sweep, jobs)


def require_slurm():
    """Skip unless a SLURM cluster answers; under CI (`.ci/run` brings one up) its absence is a failure."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=60, check=False)
        answer = (proc.stderr.strip() or f"sinfo exited with {proc.returncode}") if proc.returncode else ""
    except FileNotFoundError:
        answer = "sinfo is not installed"
    if answer:
        reason = f"no SLURM cluster answers ({answer}); `make cluster-up` starts one on localhost"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def sacct_states(job_ids, wait_s=120):
    """SLURM's own record of the jobs: {job id: (partition, state)} once none is pending, running or completing
    (a job writes its result file, which ends the launcher's wait, a moment before its process exits)."""
    deadline = time.monotonic() + wait_s
    while True:
        lines = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,Partition,State", "-j", ",".join(job_ids)],
                               capture_output=True, text=True, check=True, timeout=60).stdout.split()
        states = {job: (partition, state) for job, partition, state in (line.split("|") for line in lines)}
        settled = not {"PENDING", "RUNNING", "COMPLETING"} & {state for _, state in states.values()}
        if (settled and len(states) == len(job_ids)) or time.monotonic() > deadline:
            return states
        time.sleep(2)


@pytest.mark.slow   # three SLURM jobs of one CPU each: two run side by side and the third waits; .ci/run runs it
def test_submitit_slurm_sweep_on_the_local_cluster_merged_by_correlate(tmp_path):
    require_slurm()
    out = tmp_path / "out"
    proc = cli("attribute", ["-m", "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={PARTITION}",
                             "hydra.launcher.timeout_min=20", "seed=0,1,2", f"paths.output_dir={out}",
                             *tiny(tmp_path)], timeout=1200)
    sweep, jobs = finished_jobs(out)
    assert [j.name for j in jobs] == ["0", "1", "2"], proc.stderr[-3000:]
    # submitit names each job's folder after its SLURM id (<array id>_<index>) and keeps the sbatch script
    job_ids = sorted(p.parent.name for p in (sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(job_ids) == 3 and len({i.split("_")[0] for i in job_ids}) == 1, job_ids
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert f"#SBATCH --partition={PARTITION}" in script and "#SBATCH --time=20" in script, script
    assert sacct_states(job_ids) == {i: (PARTITION, "COMPLETED") for i in job_ids}
    merged_correlation(tmp_path, sweep, jobs)
