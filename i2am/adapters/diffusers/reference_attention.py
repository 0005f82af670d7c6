"""Reference attention ("reference-only" / ReferenceNet style): the reference image's features join the keys and
values of the denoiser's self-attention.

A reference UNet (a copy of the denoiser, or a trained ReferenceNet) runs once on the reference latent; a write
processor on each of its self-attention layers stores that layer's input tokens. The denoiser's matching
self-attention layers then attend to [own tokens, reference tokens]. The reference network is a separate module, so
it never counts as a denoising step for ``i2am.trace``; the read processor declares ``reference_keys = True``, which
is how the trace finds the relation "image:reference" (G2R over the reference's tokens, on the query grid).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn


class ReferenceBank(dict):
    """layer name -> stored reference tokens [B, L, C]."""


class ReferenceWriteProcessor(AttnProcessor2_0):
    """Plain self-attention that also stores its input tokens in the bank."""

    def __init__(self, bank: ReferenceBank, name: str):
        super().__init__()
        self.bank, self.name = bank, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        self.bank[self.name] = hidden_states.detach()
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceAttnProcessor:
    """Self-attention over [own tokens, stored reference tokens] (keys and values), one fused softmax.

    A bank entry ``None`` (``ReferenceAttention.write_none``) means no reference: plain self-attention.
    ``reference_keep`` ([B, reference tokens] bool, the knockout of ``i2am.engine.knockout``): reference tokens
    with False get -inf logits; the own tokens are always kept.
    """

    reference_keys = True

    def __init__(self, bank: ReferenceBank, name: str):
        self.bank, self.name = bank, name

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 reference_keep: torch.Tensor | None = None, **kwargs):
        if encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError(f"ReferenceAttnProcessor ({self.name}): self-attention on [B, L, C] tokens only")
        if self.name not in self.bank:
            raise RuntimeError(f"ReferenceAttnProcessor ({self.name}): no reference stored; call "
                               f"ReferenceAttention.write(...) before sampling")
        reference = self.bank[self.name]
        if reference is None:
            reference = hidden_states[:, :0]
        reference = reference.to(hidden_states.dtype)
        if hidden_states.shape[0] % reference.shape[0]:
            raise RuntimeError(f"ReferenceAttnProcessor ({self.name}): batch {hidden_states.shape[0]} is not a "
                               f"multiple of the reference batch {reference.shape[0]}")
        # CFG stacks the batch in chunks; every chunk sees the same reference
        reference = reference.repeat(hidden_states.shape[0] // reference.shape[0], 1, 1)
        context = torch.cat([hidden_states, reference], dim=1)
        batch, heads = hidden_states.shape[0], attn.heads
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // heads
        query, key, value = (t.view(batch, -1, heads, head_dim).transpose(1, 2) for t in (query, key, value))
        mask = None
        if reference_keep is not None:
            own = torch.ones(batch, hidden_states.shape[1], dtype=torch.bool, device=reference_keep.device)
            mask = torch.cat([own, reference_keep.to(torch.bool)], dim=1)[:, None, None, :]
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def _self_attention(unet: nn.Module) -> dict[str, Attention]:
    return {n: m for n, m in unet.named_modules() if isinstance(m, Attention) and not m.is_cross_attention
            and n.startswith(("down_blocks", "mid_block", "up_blocks"))}


class ReferenceAttention:
    """Wires a reference UNet into a denoiser UNet.

        ref = ReferenceAttention(pipe.unet, reference_unet)     # installs the processors
        ref.write(reference_latents, prompt_embeds)              # once per reference (timestep 0)
        images = pipe(prompt_embeds=...).images
        ref.remove()                                             # the original processors back
    """

    def __init__(self, unet: nn.Module, reference_unet: nn.Module):
        if reference_unet is unet:
            raise ValueError("ReferenceAttention needs a separate reference UNet (e.g. copy.deepcopy(unet)), so "
                             "that writing the reference is not a denoising step")
        self.unet, self.reference_unet, self.bank = unet, reference_unet, ReferenceBank()
        readers, writers = _self_attention(unet), _self_attention(reference_unet)
        if readers.keys() != writers.keys():
            raise ValueError("ReferenceAttention: the reference UNet's self-attention layers differ from the "
                             "denoiser's")
        self._originals = {n: (readers[n].processor, writers[n].processor) for n in readers}
        for name in readers:
            readers[name].set_processor(ReferenceAttnProcessor(self.bank, name))
            writers[name].set_processor(ReferenceWriteProcessor(self.bank, name))

    @torch.no_grad()
    def write(self, reference_latents: torch.Tensor, encoder_hidden_states: torch.Tensor, timestep=0,
              **unet_kwargs) -> None:
        """Run the reference UNet once on the (scaled) reference latent and store every layer's tokens."""
        self.bank.clear()
        self.reference_unet(reference_latents, timestep, encoder_hidden_states=encoder_hidden_states, **unet_kwargs)

    def write_none(self) -> None:
        """No reference: every reading layer attends to its own tokens only (the null reference)."""
        self.bank.clear()
        self.bank.update({name: None for name in self._originals})

    def remove(self) -> None:
        readers, writers = _self_attention(self.unet), _self_attention(self.reference_unet)
        for name, (reader, writer) in self._originals.items():
            readers[name].set_processor(reader)
            writers[name].set_processor(writer)
        self.bank.clear()
