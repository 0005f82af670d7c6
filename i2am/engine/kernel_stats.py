"""The attention kernel's own statistics: ``F.scaled_dot_product_attention``'s very output together with the
per-query log-sum-exp its fused kernel computes anyway.

``torch._fused_sdp_choice`` names the kernel SDPA would run for these inputs; where that kernel's aten op returns
the log-sum-exp (flash attention on CPU; flash and memory-efficient attention on CUDA), the op is called as SDPA
calls it, so the output is the one the model would have computed. Each (device, kernel, dtype, mask dtype) is
checked once per process against SDPA itself (output bit-identical, log-sum-exp equal to a recomputation on a few
queries); anything else (another kernel, dropout, causal, GQA, gradients, a failed check) returns None and the
caller runs the backend as before and recomputes the statistics.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

KERNEL_LSE, RECOMPUTED = "kernel-lse", "recomputed"
_CHECK_QUERIES = 16
_verified: dict[tuple, bool] = {}


def additive_mask(mask, dtype=torch.float32):
    """A boolean mask as the additive one SDPA hands its kernels (0 where kept, -inf where masked); any other mask
    (additive already, or None) as it is."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def _flash_cpu(q, k, v, mask, scale):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=additive_mask(mask, q.dtype),
                                                                      scale=scale)[:2]


def _flash_cuda(q, k, v, mask, scale):
    if mask is not None or q.shape[-1] % 8:   # SDPA pads the head dimension first
        return None
    out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scale)
    return out[0], out[1]


def _efficient_cuda(q, k, v, mask, scale):
    if mask is not None:   # SDPA pads the mask's key axis first
        return None
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, False,
                                                                      scale=scale)[:2]
    return out, lse[..., :q.shape[-2]]   # the kernel pads its query axis


KERNELS = {("cpu", SDPBackend.FLASH_ATTENTION): _flash_cpu, ("cuda", SDPBackend.FLASH_ATTENTION): _flash_cuda,
           ("cuda", SDPBackend.EFFICIENT_ATTENTION): _efficient_cuda}


def _agrees(out, lse, q, k, v, mask, scale) -> bool:
    if not torch.equal(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)):
        return False
    rows = slice(0, _CHECK_QUERIES)
    logits = torch.matmul(q[..., rows, :].float(), k.float().transpose(-1, -2))
    logits = logits * (q.shape[-1] ** -0.5 if scale is None else scale)
    if mask is not None:
        additive = additive_mask(mask, torch.float32).float()
        logits = logits + additive.expand(*additive.shape[:-2], q.shape[-2], k.shape[-2])[..., rows, :]
    return torch.allclose(lse[..., rows].float(), torch.logsumexp(logits, -1), rtol=1e-3, atol=1e-3)


def attention_with_lse(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                       enable_gqa=False) -> tuple[torch.Tensor, torch.Tensor] | None:
    """SDPA's output for these arguments and its kernel's log-sum-exp [B, heads, Lq] (fp32, natural log of the sum
    over keys of exp(scaled, masked logits)), or None where the kernel SDPA would run exposes none (module doc)."""
    grads = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    if dropout_p or is_causal or enable_gqa or grads or query.dim() != 4:
        return None
    backend = SDPBackend(torch._fused_sdp_choice(query, key, value, attn_mask, dropout_p, is_causal, scale=scale,
                                                 enable_gqa=enable_gqa))
    kernel = KERNELS.get((query.device.type, backend))
    result = None if kernel is None else kernel(query, key, value, attn_mask, scale)
    if result is None:
        return None
    signature = (query.device.type, backend, query.dtype, None if attn_mask is None else attn_mask.dtype)
    if signature not in _verified:
        _verified[signature] = _agrees(*result, query, key, value, attn_mask, scale)
    return result if _verified[signature] else None
