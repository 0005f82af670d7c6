"""A naive float64 reference for joint-attention I2AM: each block's inputs are recorded by forward pre-hooks, then q
and k are rebuilt from the block's own projections, q/k norms and rotary embedding, the full [L, L] probabilities
are formed and every accumulator is computed by the definitions (docs/dit_editors.md)."""
from __future__ import annotations

import torch
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_qwenimage import apply_rotary_emb_qwen


def _heads(x, attn, head_dim):
    return x.unflatten(-1, (-1, head_dim))


def _norm(module, x):
    return x if module is None else module(x)


def joint_qk(attn, kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k [B, heads, L, d] of one attention call, in the processor's joint order."""
    kind = type(attn.processor).__name__
    h = kwargs["hidden_states"]
    e = kwargs.get("encoder_hidden_states")
    rope = kwargs.get("image_rotary_emb")
    if kind == "JoyImageAttnProcessor":   # fused q/k/v per stream, [image, text], its own rotary
        from diffusers.models.transformers.transformer_joyimage import _apply_rotary_emb as joy_rotary

        q, k, _ = attn.img_attn_qkv(h).chunk(3, dim=-1)
        eq, ek, _ = attn.txt_attn_qkv(e).chunk(3, dim=-1)
        q, k = attn.img_attn_q_norm(q.unflatten(-1, (attn.heads, -1))), attn.img_attn_k_norm(
            k.unflatten(-1, (attn.heads, -1)))
        eq, ek = attn.txt_attn_q_norm(eq.unflatten(-1, (attn.heads, -1))), attn.txt_attn_k_norm(
            ek.unflatten(-1, (attn.heads, -1)))
        image_rope, text_rope = rope
        if image_rope is not None:
            q, k = joy_rotary(q, k, image_rope)
        if text_rope is not None:
            eq, ek = joy_rotary(eq, ek, text_rope)
        return torch.cat([q, eq], 1).transpose(1, 2), torch.cat([k, ek], 1).transpose(1, 2)
    if kind == "Flux2ParallelSelfAttnProcessor":
        qkv = attn.to_qkv_mlp_proj(h)[..., :3 * attn.inner_dim]
        q, k, _ = qkv.chunk(3, dim=-1)
        q, k = _norm(attn.norm_q, _heads(q, attn, attn.head_dim)), _norm(attn.norm_k, _heads(k, attn, attn.head_dim))
        return tuple(apply_rotary_emb(x, rope, sequence_dim=1).transpose(1, 2) for x in (q, k))
    head_dim = attn.inner_dim // attn.heads
    q = _norm(attn.norm_q, _heads(attn.to_q(h), attn, head_dim))
    k = _norm(attn.norm_k, _heads(attn.to_k(h), attn, head_dim))
    if kind == "JointAttnProcessor2_0":   # SD3: [image, text], no rotary
        eq = _norm(attn.norm_added_q, _heads(attn.add_q_proj(e), attn, head_dim))
        ek = _norm(attn.norm_added_k, _heads(attn.add_k_proj(e), attn, head_dim))
        return torch.cat([q, eq], 1).transpose(1, 2), torch.cat([k, ek], 1).transpose(1, 2)
    if kind == "QwenDoubleStreamAttnProcessor2_0":
        eq = _norm(attn.norm_added_q, _heads(attn.add_q_proj(e), attn, head_dim))
        ek = _norm(attn.norm_added_k, _heads(attn.add_k_proj(e), attn, head_dim))
        img, txt = rope
        q, k = apply_rotary_emb_qwen(q, img, use_real=False), apply_rotary_emb_qwen(k, img, use_real=False)
        eq, ek = apply_rotary_emb_qwen(eq, txt, use_real=False), apply_rotary_emb_qwen(ek, txt, use_real=False)
        return torch.cat([eq, q], 1).transpose(1, 2), torch.cat([ek, k], 1).transpose(1, 2)
    if e is not None:   # FLUX / FLUX.2 double-stream: [text, image]
        eq = _norm(attn.norm_added_q, _heads(attn.add_q_proj(e), attn, head_dim))
        ek = _norm(attn.norm_added_k, _heads(attn.add_k_proj(e), attn, head_dim))
        q, k = torch.cat([eq, q], 1), torch.cat([ek, k], 1)
    return tuple(apply_rotary_emb(x, rope, sequence_dim=1).transpose(1, 2) for x in (q, k))


class Recorder:
    """Records the inputs of every block attention call and of the transformer's calls."""

    def __init__(self, transformer, blocks, keep_call=lambda index: True):
        self.transformer, self.blocks, self.keep_call = transformer, blocks, keep_call
        self.calls: list[dict] = []      # one per kept transformer call: block name -> kwargs
        self._index, self._keep, self._handles = -1, False, []

    def __enter__(self):
        def on_transformer(module, args, kwargs):
            self._index += 1
            self._keep = self.keep_call(self._index)
            if self._keep:
                self.calls.append({})
        self._handles.append(self.transformer.register_forward_pre_hook(on_transformer, with_kwargs=True))
        for block in self.blocks:
            def on_block(module, args, kwargs, name=block.name):
                if self._keep:
                    names = ["hidden_states", "encoder_hidden_states", "attention_mask", "image_rotary_emb"]
                    got = dict(zip(names, args))
                    got.update(kwargs)
                    self.calls[-1][name] = {k: (v.detach().clone() if torch.is_tensor(v) else v)
                                            for k, v in got.items()}
            self._handles.append(block.module.register_forward_pre_hook(on_block, with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()


def naive_accumulators(recorder, blocks, layout, rows=slice(None), time_groups=1, sram=(), key_valid=None) -> dict:
    """raw keys as in AttributionMaps ("r2g/<relation>/<block>", ...), float64, from the full probabilities.

    key_valid: optional [L] bool of the keys the attention may use (padding masked out of every softmax)."""
    out = {}
    gen = layout.generated
    steps = len(recorder.calls)
    with torch.no_grad():
        for step, call in enumerate(recorder.calls):
            group = step * time_groups // steps
            for block in blocks:
                attn = block.module
                q, k = joint_qk(attn, call[block.name])
                q, k = q[rows].double(), k[rows].double()
                logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
                valid = torch.ones(logits.shape[-1], dtype=torch.bool) if key_valid is None else key_valid
                logits = logits.masked_fill(~valid, float("-inf"))
                full = torch.softmax(logits, -1)
                g = slice(gen.start, gen.stop)
                for seg in layout.keys:
                    r = slice(seg.start, seg.stop)
                    sub = logits[:, :, g, r]
                    keep = valid[r]
                    over_g = torch.softmax(sub[..., keep], -2).mean(-1)   # mean over the usable tokens only
                    parts = {
                        f"{seg.relation}": (over_g, torch.softmax(sub, -1).mean(-2)),
                        f"share:{seg.relation}": (full[:, :, g, r].sum(-1), full[:, :, g, r].mean(-2)),
                    }
                    for relation, (r2g, g2r) in parts.items():
                        name = f"{relation}/{block.name}"
                        for key, value, grid in (("r2g", r2g, gen.grid), ("g2r", g2r, seg.grid)):
                            acc = out.setdefault(f"{key}/{name}",
                                                 torch.zeros(value.shape[0], time_groups, value.shape[1], *grid,
                                                             dtype=torch.float64))
                            acc[:, group] += value.reshape(value.shape[0], value.shape[1], *grid)
                    if block.name in sram:
                        key = f"sram/{seg.relation}/{block.name}"
                        value = torch.softmax(sub, -1).mean(1)
                        out[key] = out.get(key, 0) + value
                        share_key = f"sram/share:{seg.relation}/{block.name}"
                        out[share_key] = out.get(share_key, 0) + full[:, :, g, r].mean(1)
    return out


def naive_families(raw: dict, names: list[str], direction: str) -> dict[str, torch.Tensor]:
    """ULAM/TLAM/HLAM/LLAM of layers that share one grid (no resize): means of the raw sums, clamped at 0."""
    stack = torch.stack([raw[f"{direction}/{n}"] for n in names], 1)   # [B, layers, G, heads, h, w]
    summed = stack.sum(2)
    return {"ulam": summed.mean((1, 2)), "tlam": stack.mean((1, 3)), "hlam": summed.mean(1),
            "llam": summed.mean(2)}
