"""i2am.app.artifact_jobs: the job list of a paper artifact's multirun, from its artifact.runs and artifact.toy."""
import pytest
from omegaconf import OmegaConf

from i2am.app.artifact_jobs import ArtifactRunsError, job_overrides


def artifact(**changes):
    return OmegaConf.create({
        "name": "table", "twin": "real", "labels": None,
        "runs": {"a": ["model=big", "model.checkpoint=${artifact.checkpoints.a}"], "a_unpaired": ["model=big",
                 "data.mode=unpaired"], "b": []},
        "toy": {"overrides": ["data=toy", "data.limit=2"], "runs": {"a": ["model=big-tiny"], "b": []}},
        **changes})


def test_real_jobs_are_each_runs_overrides_then_the_arguments_then_the_label():
    jobs = job_overrides(artifact(), ["experiment=table", "data.limit=9"])
    assert jobs == {"a": ["model=big", "model.checkpoint=${artifact.checkpoints.a}", "experiment=table",
                          "data.limit=9", "artifact.label=a"],
                    "a_unpaired": ["model=big", "data.mode=unpaired", "experiment=table", "data.limit=9",
                                   "artifact.label=a_unpaired"],
                    "b": ["experiment=table", "data.limit=9", "artifact.label=b"]}


def test_the_toy_twin_runs_its_labels_with_the_shared_then_its_own_overrides():
    jobs = job_overrides(artifact(twin="toy"), ["data.limit=9"])
    assert jobs == {"a": ["model=big", "model.checkpoint=${artifact.checkpoints.a}", "data=toy", "data.limit=2",
                          "model=big-tiny", "data.limit=9", "artifact.label=a"],
                    "b": ["data=toy", "data.limit=2", "data.limit=9", "artifact.label=b"]}


def test_a_toy_block_without_runs_runs_every_label():
    jobs = job_overrides(artifact(twin="toy", toy={"overrides": ["data=toy"]}))
    assert list(jobs) == ["a", "a_unpaired", "b"] and jobs["b"] == ["data=toy", "artifact.label=b"]


def test_labels_picks_a_subset_in_the_artifacts_order():
    assert list(job_overrides(artifact(labels=["b", "a"]))) == ["a", "b"]
    assert list(job_overrides(artifact(labels="a_unpaired"))) == ["a_unpaired"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"twin": "fake"}, r"artifact.twin='fake'.*real, toy"),
    ({"runs": {}}, r"table: artifact.runs lists no run"),
    ({"twin": "toy", "toy": {"runs": {"c": []}}}, r"artifact.toy.runs names \['c'\]"),
    ({"twin": "toy", "labels": ["a_unpaired"]}, r"has no run \['a_unpaired'\]; its runs: a, b"),
])
def test_a_broken_artifact_block_names_the_key(changes, message):
    with pytest.raises(ArtifactRunsError, match=message):
        job_overrides(artifact(**changes))
