"""The capture's logits buffer (i2am.engine.workspace): blocks written into one buffer that grows to the largest,
with the scores unchanged."""
import torch

from i2am.engine.scores import spatial_scores
from i2am.engine.workspace import Workspace


def test_blocks_share_one_buffer_that_grows_to_the_largest():
    workspace = Workspace()
    a, b = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 4, 6)
    first = workspace.matmul(a, b)
    torch.testing.assert_close(first, a @ b)
    assert workspace.nbytes == first.numel() * 4
    smaller = workspace.matmul(a[:, :, :2], b)
    assert smaller.data_ptr() == first.data_ptr() and workspace.nbytes == first.numel() * 4   # reused, not grown
    larger = workspace.matmul(torch.randn(2, 3, 9, 4), b)
    assert workspace.nbytes == larger.numel() * 4
    workspace.release()
    assert workspace.nbytes == 0


def test_scores_through_the_workspace_equal_those_without():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 20, 8, generator=g), torch.randn(2, 3, 7, 8, generator=g)
    lse = torch.logsumexp(q @ k.transpose(-1, -2) * 0.3, -1)
    workspace = Workspace()
    for chunk in (64, 6):   # one block, then several into the same buffer
        for stats in (None, lse):
            plain = spatial_scores(q, k, 0.3, chunk=chunk, sram=True, lse=stats)
            reused = spatial_scores(q, k, 0.3, chunk=chunk, sram=True, lse=stats, workspace=workspace)
            for key, value in plain.items():   # the same matmul kernel, only its output buffer differs: exact
                assert torch.equal(reused[key], value), key
