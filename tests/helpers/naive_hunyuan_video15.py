"""A naive float64 reference for HunyuanVideo-1.5's joint attention (the tiny build of
``i2am.adapters.diffusers.video.tiny.build_hunyuan_video15``): each block attention's q and k are rebuilt from its
inputs with the processor's own steps (projections, per-head RMS norms, rotary embedding on the video tokens, the
context appended after the video), each sample's context order is rebuilt from the forward's masks by a plain loop
(valid image, glyph, text tokens, then the invalid ones in the same order), and the maps are softmaxes of the logits by
their definitions: R2G over (frame, h, w), G2R per generated frame, padding keys left out (or, ``with_padding``,
kept: what a capture that ignored the mask would give)."""
from __future__ import annotations

import torch
from diffusers.models.embeddings import apply_rotary_emb

STREAMS = ("image:reference", "text:glyph", "text")   # the forward's context order


class Recorder:
    """Per transformer call: its context masks and each block's (q, k) [B, heads, L, d] in float64."""

    def __init__(self, transformer):
        self.transformer = transformer
        self.calls: list[dict] = []
        self._handles = []

    def __enter__(self):
        def on_call(module, args, kwargs):
            image = kwargs["image_embeds"]
            self.calls.append({"video": kwargs["hidden_states"].shape[-3:], "blocks": [],
                               "masks": {"image:reference": torch.full(image.shape[:2], bool((image != 0).any())),
                                         "text:glyph": kwargs["encoder_attention_mask_2"].bool(),
                                         "text": kwargs["encoder_attention_mask"].bool()}})

        def on_attention(attn, args, kwargs):
            self.calls[-1]["blocks"].append(_qk(attn, kwargs))

        self._handles.append(self.transformer.register_forward_pre_hook(on_call, with_kwargs=True))
        for block in self.transformer.transformer_blocks:
            self._handles.append(block.attn.register_forward_pre_hook(on_attention, with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()


@torch.no_grad()
def _qk(attn, kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    h, e, rope = kwargs["hidden_states"], kwargs["encoder_hidden_states"], kwargs["image_rotary_emb"]
    q = attn.norm_q(attn.to_q(h).unflatten(2, (attn.heads, -1)))
    k = attn.norm_k(attn.to_k(h).unflatten(2, (attn.heads, -1)))
    q, k = apply_rotary_emb(q, rope, sequence_dim=1), apply_rotary_emb(k, rope, sequence_dim=1)
    eq = attn.norm_added_q(attn.add_q_proj(e).unflatten(2, (attn.heads, -1)))
    ek = attn.norm_added_k(attn.add_k_proj(e).unflatten(2, (attn.heads, -1)))
    return (torch.cat([q, eq], 1).transpose(1, 2).double(), torch.cat([k, ek], 1).transpose(1, 2).double())


def context_positions(masks: dict, sample: int, offset: int) -> dict[str, list[int]]:
    """Per stream, the sequence position of each of its tokens in sample ``sample``."""
    order = [(name, i) for valid in (True, False) for name in STREAMS
             for i, flag in enumerate(masks[name][sample].tolist()) if flag == valid]
    positions = {name: [0] * masks[name].shape[1] for name in STREAMS}
    for place, (name, i) in enumerate(order):
        positions[name][i] = offset + place
    return positions


def naive(calls: list[dict], relation: str, *, share: bool = False, with_padding: bool = False):
    """Per block, R2G [B, heads, F, h, w] and G2R [B, heads, F, tokens] of ``relation`` summed over ``calls``."""
    out = {}
    for call in calls:
        frames, h, w = call["video"]
        video = frames * h * w
        masks = call["masks"]
        for block, (q, k) in enumerate(call["blocks"]):
            batch, heads, _, dim = q.shape
            tokens = masks[relation].shape[1]
            r2g = torch.zeros(batch, heads, frames, h, w, dtype=torch.float64)
            g2r = torch.zeros(batch, heads, frames, tokens, dtype=torch.float64)
            for b in range(batch):
                positions = context_positions(masks, b, video)
                own = [i for i in range(tokens) if with_padding or masks[relation][b, i]]
                if not own:
                    continue
                keys = [positions[relation][i] for i in own]
                if share:   # the full row: every key the model lets a video token attend to
                    keys_all = list(range(video)) + [positions[name][i] for name in STREAMS
                                                     for i in range(masks[name].shape[1]) if masks[name][b, i]]
                    logits = q[b, :, :video] @ k[b, :, keys_all].transpose(-1, -2) * dim ** -0.5
                    probs = torch.softmax(logits, -1)[..., [keys_all.index(c) for c in keys]]
                    r2g[b] = probs.sum(-1).reshape(heads, frames, h, w)
                else:
                    logits = q[b, :, :video] @ k[b, :, keys].transpose(-1, -2) * dim ** -0.5
                    r2g[b] = torch.softmax(logits, -2).mean(-1).reshape(heads, frames, h, w)
                    probs = torch.softmax(logits, -1)
                g2r[b][..., own] = probs.reshape(heads, frames, h * w, len(own)).mean(2)
            r, g = out.get(block, (0, 0))
            out[block] = (r + r2g, g + g2r)
    return out
