"""unfold_frames: the rows (sample, frame) of a frame-folded UNet call become one video per sample, with queries in
frame-major order, the keys of the sample's first frame, and each query's log-sum-exp carried along."""
from __future__ import annotations

import pytest
import torch

from i2am.engine.capture import unfold_frames
from i2am.engine.scores import spatial_scores

BATCH, FRAMES, TOKENS, KEYS, HEADS, DIM = 2, 3, 6, 5, 2, 4


def _folded(seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(BATCH * FRAMES, TOKENS, HEADS * DIM, generator=g)
    context = torch.randn(BATCH, KEYS, HEADS * DIM, generator=g)
    return q, context.repeat_interleave(FRAMES, dim=0), context   # one context per sample, repeated over its frames


def _heads(x):
    return x.reshape(x.shape[0], x.shape[1], HEADS, DIM).transpose(1, 2)


def test_queries_are_frame_major_and_keys_are_the_samples_context():
    q, k, context = _folded()
    video_q, video_k, lse = unfold_frames(q, k, None, FRAMES)
    assert video_q.shape == (BATCH, FRAMES * TOKENS, HEADS * DIM) and lse is None
    torch.testing.assert_close(video_k, context, rtol=0, atol=0)
    for b in range(BATCH):
        for f in range(FRAMES):
            assert torch.equal(video_q[b, f * TOKENS:(f + 1) * TOKENS], q[b * FRAMES + f])


def test_the_carried_log_sum_exp_gives_the_recomputed_scores():
    """The kernel's per-query log-sum-exp of the folded call, unfolded, normalises the video's scores exactly as the
    softmax recomputed from the unfolded logits does."""
    q, k, _ = _folded(1)
    scale = DIM ** -0.5
    folded_lse = torch.logsumexp(_heads(q) @ _heads(k).transpose(-1, -2) * scale, dim=-1)   # [B*F, heads, L]
    video_q, video_k, video_lse = unfold_frames(q, k, folded_lse, FRAMES)
    qh, kh = _heads(video_q), _heads(video_k)
    carried = spatial_scores(qh, kh, scale, lse=video_lse, frames=FRAMES)
    recomputed = spatial_scores(qh, kh, scale, frames=FRAMES)
    for key in ("r2g", "g2r"):   # one float32 path against another: rounding only
        torch.testing.assert_close(carried[key], recomputed[key], rtol=1e-5, atol=1e-7)


def test_a_batch_that_does_not_split_into_frames_is_an_error():
    q, k, _ = _folded()
    with pytest.raises(RuntimeError, match="does not split into 4 frames"):
        unfold_frames(q, k, None, 4)
