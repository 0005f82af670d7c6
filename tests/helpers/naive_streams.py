"""Naive per-stream logits of a diffusers pipeline run, for the ``i2am.trace`` tests: a forward pre-hook on every
attention layer recomputes, in float64 and from the layer's own projection weights, the queries and the keys of each
conditioning (text ``to_k``, IP-Adapter ``to_k_ip[i]`` on the image tokens, reference attention ``to_k`` on the
stored reference tokens), keeps the full logits of the conditional chunk at every call, and hands them to the naive
families of ``naive_attribution``. Slow and memory-hungry by design."""
from __future__ import annotations

import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from helpers.naive_attribution import families


def _linear(x, layer):
    return F.linear(x.double(), layer.weight.double(), None if layer.bias is None else layer.bias.double())


def _logits(q, k, heads):
    b, lq, width = q.shape
    d = width // heads
    qh = q.reshape(b, lq, heads, d).transpose(1, 2)
    kh = k.reshape(b, k.shape[1], heads, d).transpose(1, 2)
    return (qh @ kh.transpose(-1, -2)) * d ** -0.5                      # [B, heads, Lq, Lk]


def record(pipe, run, chunk: int, chunks: int, text: str = "text"):
    """Run ``run()`` with recording hooks; -> {layer name: [logits [B*heads, Lq, Lk] per call]}.

    chunk/chunks: the conditional chunk index and the number of chunks of every denoiser batch (the test states them
    independently of the trace's tables)."""
    stores: dict[str, list] = {}
    handles = []
    nets = [("", pipe.unet)]
    if getattr(pipe, "controlnet", None) is not None:
        nets.insert(0, ("controlnet.", pipe.controlnet))

    def pick(x):
        return x.chunk(chunks)[chunk] if chunks > 1 else x

    def hook_for(path, attn):
        def hook(module, args, kwargs):
            hidden = args[0]
            context = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
            q = _linear(hidden, attn.to_q)
            processor = attn.processor
            while hasattr(processor, "inner"):   # under a capture: the pipeline's own processor
                processor = processor.inner
            streams = []
            if getattr(processor, "reference_keys", False):
                ref = processor.bank[processor.name]
                ref = ref.repeat(hidden.shape[0] // ref.shape[0], 1, 1)
                streams.append(("image:reference", _linear(ref, attn.to_k)))
            elif context is not None:
                ips = []
                if isinstance(context, tuple):
                    context, ips = context
                streams.append((text, _linear(context, attn.to_k)))
                for i, (ip, to_k_ip) in enumerate(zip(ips, getattr(processor, "to_k_ip", []))):
                    ip = ip.flatten(1, 2) if ip.dim() == 4 else ip
                    streams.append(("image:ip_adapter" + (f".{i}" if i else ""), _linear(ip, to_k_ip)))
            for relation, k in streams:
                logits = pick(_logits(q, k, attn.heads))
                stores.setdefault(f"{relation}/{path}", []).append(logits.reshape(-1, *logits.shape[2:]))
        return hook

    for prefix, net in nets:
        for name, module in net.named_modules():
            if isinstance(module, Attention) and name.startswith(("down_blocks", "mid_block", "up_blocks")):
                handles.append(module.register_forward_pre_hook(hook_for(prefix + name, module), with_kwargs=True))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return stores


def expected_families(stores, maps, relation: str, direction: str, group: str | None = None):
    """Naive families of one relation, on the layers and grids the trace reports for it."""
    layers = [m for m in maps.meta["layers"] if m.get("relation") == relation and group in (None, m["group"])]
    names = [m["name"] for m in layers]
    grids = {m["name"]: (tuple(m["query_grid"]), tuple(m["ref_grid"])) for m in layers}
    pick = 0 if direction == "r2g" else 1
    common = max((grids[n][pick] for n in names), key=lambda hw: hw[0] * hw[1])
    return families({n: stores[n] for n in names}, grids, layers[0]["heads"], maps.meta["num_steps"],
                    maps.meta["time_groups"], direction, common)
