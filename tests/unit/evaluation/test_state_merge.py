"""i2am.evaluation.state_merge: a run's dataset values are the merge of its finished samples' evaluator states."""
import torch

from i2am.evaluation import ImacsEvaluator
from i2am.evaluation.state_merge import merge_run_states
from i2am.runs import RunDir


def maps(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"r2g_map": torch.rand(1, 16, 12, generator=g), "inpaint_mask": torch.rand(1, 16, 12, generator=g) > 0.5,
            "g2r_map": torch.rand(1, 16, 12, generator=g), "reference_mask": torch.rand(1, 16, 12, generator=g) > 0.5}


def test_merge_counts_finished_samples_only_and_matches_one_pass(tmp_path):
    run = RunDir(tmp_path).create()
    one_pass = ImacsEvaluator()
    for seed, sample_id in enumerate(("b", "a", "unfinished")):
        evaluator = ImacsEvaluator()
        evaluator.update_maps(**maps(seed))
        run.save_states(sample_id, {"imacs": evaluator.state()})
        if sample_id != "unfinished":        # killed before its done-marker: not part of the dataset values
            run.mark_done(sample_id, evaluator.compute())
            one_pass.update_maps(**maps(seed))
    merged = merge_run_states(run, {"imacs": ImacsEvaluator()})
    expected = one_pass.compute()
    assert merged["n_samples"] == 2 and merged.keys() == {"n_samples", *expected}
    # float64 sums of the same two samples, merged in id order vs accumulated in another: equal to rounding
    torch.testing.assert_close({k: merged[k] for k in expected}, expected, rtol=1e-12, atol=0)
