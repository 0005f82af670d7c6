"""Quantised-delta checkpoint files (``.qdelta``): the quantiser's error bound, the file read through
``read_state_dict`` as base + codes * scale, bit-identical loads in every process and the errors a user can hit."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from i2am.adapters._checkpoint import CheckpointError, read_state_dict
from i2am.adapters._delta_checkpoint import DELTA_SUFFIX, encode_delta, quantise

LEVELS = 7


def _shapes():
    return {"conv.weight": (6, 3, 3, 3), "linear.weight": (5, 8), "bias": (6,), "context": (1, 4, 3)}


@pytest.fixture
def base_and_state(tmp_path):
    generator = torch.Generator().manual_seed(0)
    base = {k: torch.randn(s, generator=generator).half() for k, s in _shapes().items()}
    state = {k: v.float() + 0.1 * torch.randn(v.shape, generator=generator) for k, v in base.items()}
    state["bias"] = base["bias"].float()   # an unchanged tensor
    base_file = tmp_path / "final.safetensors"
    save_file(base, str(base_file))
    delta_file = tmp_path / f"early{DELTA_SUFFIX}"
    delta_file.write_bytes(encode_delta(state, base_file, LEVELS))
    return base, state, base_file, delta_file


def test_each_code_is_the_nearest_level_of_its_channel():
    delta = torch.randn(4, 10, generator=torch.Generator().manual_seed(1)) * torch.tensor([[1.0], [0.01], [5.0], [0.0]])
    codes, scale = quantise(delta, LEVELS)
    assert codes.dtype == torch.int8 and scale.shape == (4,)
    assert scale[3] == 0 and not codes[3].any()                       # an unchanged channel stays exact
    assert torch.equal(codes[:3].abs().amax(dim=1), torch.full((3,), LEVELS, dtype=torch.int8))
    error = (codes.float() * scale[:, None] - delta).abs()
    assert (error <= scale[:, None] / 2 * (1 + 1e-6)).all()           # rounding to the nearest of the levels


def test_levels_must_fit_int8_codes():
    with pytest.raises(ValueError, match="levels=128"):
        quantise(torch.ones(2, 2), 128)


def test_the_file_reads_as_base_plus_codes_times_scale(base_and_state):
    base, state, _, delta_file = base_and_state
    weights = read_state_dict(delta_file)
    assert set(weights) == set(base) and all(w.dtype == torch.float32 for w in weights.values())
    assert torch.equal(weights["bias"], base["bias"].float())
    for key in ("conv.weight", "linear.weight", "context"):
        delta = state[key] - base[key].float()
        channel_max = delta.reshape(delta.shape[0], -1).abs().amax(dim=1)
        bound = (channel_max / LEVELS / 2 * (1 + 1e-5)).reshape(-1, *[1] * (delta.dim() - 1))
        assert ((weights[key] - state[key]).abs() <= bound + 1e-6).all(), key   # + float32 rounding of the sum


def _digest_in_a_fresh_process(path, env=None) -> str:
    code = ("import hashlib, sys; from i2am.adapters._checkpoint import read_state_dict; "
            "w = read_state_dict(sys.argv[1]); "
            "print(hashlib.sha256(b''.join(w[k].numpy().tobytes() for k in sorted(w))).hexdigest())")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **(env or {})}, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_loading_is_bit_identical_across_loads_processes_and_cpu_kernels(base_and_state):
    delta_file = base_and_state[3]
    first, second = read_state_dict(delta_file), read_state_dict(delta_file)
    assert all(torch.equal(first[k], second[k]) for k in first)
    here = hashlib.sha256(b"".join(first[k].numpy().tobytes() for k in sorted(first))).hexdigest()
    assert _digest_in_a_fresh_process(delta_file, {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"}) == here


def test_a_changed_or_missing_base_is_named_with_the_fix(base_and_state):
    base, _, base_file, delta_file = base_and_state
    save_file({k: v + 1 for k, v in base.items()}, str(base_file))
    with pytest.raises(CheckpointError, match="final.safetensors.*a different file now.*export the delta again"):
        read_state_dict(delta_file)
    base_file.unlink()
    with pytest.raises(CheckpointError, match="final.safetensors.*missing"):
        read_state_dict(delta_file)


def test_a_truncated_file_is_refused_by_name(base_and_state):
    delta_file = base_and_state[3]
    delta_file.write_bytes(delta_file.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"early{DELTA_SUFFIX} is not a readable"):
        read_state_dict(delta_file)


def test_the_state_must_have_the_bases_keys(base_and_state):
    _, state, base_file, _ = base_and_state
    with pytest.raises(KeyError, match="bias"):
        encode_delta({k: v for k, v in state.items() if k != "bias"}, base_file, LEVELS)
