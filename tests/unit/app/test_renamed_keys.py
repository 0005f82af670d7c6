"""The evaluator sets are chosen with evaluator_set=<set> (conf/evaluator_set/); the old key evaluators=<set> is
refused naming the new one, before Hydra reads it and without a traceback. So are the retired paper-artifact spellings
(experiment=<artifact>-toy, +artifact/<artifact>=<label>)."""
import pytest
from helpers.tasks_util import cli

from i2am.app.cli import check
from i2am.app.renamed_keys import RenamedKeyError, override_key, refuse_renamed_keys


@pytest.mark.parametrize("override", ["evaluators=imacs", "+evaluators=toy", "override evaluators=none",
                                      "~evaluators=auto"])
def test_old_set_key_is_refused_naming_the_new_one(override):
    set_name = override.split("=")[1]
    with pytest.raises(RenamedKeyError, match=rf"evaluator_set={set_name}\b"):
        refuse_renamed_keys(["model=custom-tiny", override])


def test_options_of_one_evaluator_keep_their_key():
    refuse_renamed_keys(["evaluator_set=imacs", "evaluators.imacs.penalty=2.0", "+evaluator@evaluators.x=detection"])
    assert override_key("++evaluators.imacs.penalty=2") == "evaluators.imacs.penalty"


@pytest.mark.parametrize(("override", "new_form"), [
    ("experiment=teaser-toy", "`i2am reproduce teaser --toy` or `i2am attribute -m experiment=teaser artifact.twin"),
    ("experiment=detection_table-toy", "i2am detect -m experiment=detection_table artifact.twin=toy`"),
    ("+artifact/vitonhd_table=custom_unpaired",
     "`i2am attribute -m experiment=vitonhd_table artifact.labels=[custom_unpaired]`"),
    ("+artifact/daam_comparison=dcivton-tiny",
     "`i2am attribute -m experiment=daam_comparison artifact.twin=toy artifact.labels=[dcivton]`")])
def test_retired_artifact_spellings_are_refused_naming_the_new_form(override, new_form):
    with pytest.raises(RenamedKeyError, match="conf/experiment/") as refused:
        refuse_renamed_keys(["paths.output_dir=/OUT", override])
    assert new_form in str(refused.value)


def test_experiments_that_only_end_in_toy_are_no_twins():
    refuse_renamed_keys(["experiment=toy_pretrain_custom", "model=custom-toy", "artifact.labels=[custom]"])


def test_cli_and_check_refuse_the_old_key(capsys):
    proc = cli("attribute", ["evaluators=imacs"], check=False, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "evaluator_set=imacs" in proc.stderr and "i2am attribute: error:" in proc.stderr
    assert check(["attribute", "evaluators=toy"]) == 2
    assert "evaluator_set=toy" in capsys.readouterr().out
    proc = cli("attribute", ["experiment=sram_stableviton-toy"], check=False, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "i2am reproduce sram_stableviton --toy" in proc.stderr
