"""The evaluator sets are chosen with evaluator_set=<set> (conf/evaluator_set/); the old key evaluators=<set> is
refused naming the new one, before Hydra reads it and without a traceback."""
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


def test_cli_and_check_refuse_the_old_key(capsys):
    proc = cli("attribute", ["evaluators=imacs"], check=False, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "evaluator_set=imacs" in proc.stderr and "i2am attribute: error:" in proc.stderr
    assert check(["attribute", "evaluators=toy"]) == 2
    assert "evaluator_set=toy" in capsys.readouterr().out
