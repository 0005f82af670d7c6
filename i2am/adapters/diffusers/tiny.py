"""diffusers pipelines built from config with random weights (nothing downloaded): the ``diffusers-tiny`` preset and
the architecture of ``model=diffusers`` without a folder. IP-Adapters are built from config too: the plain one
through diffusers' own ``_load_ip_adapter_weights`` with a random state dict in the original layout, the Plus
resampler by setting its projection and the IP processors directly."""
from __future__ import annotations

import torch

from i2am.adapters._components import build_pbe_image_encoder, build_unet, build_vae, component_config, on_device
from i2am.sampling.sampler import make_scheduler

TEXT = {"tiny": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                     vocab_size=1000, max_position_embeddings=16, projection_dim=32, bos_token_id=0,
                     eos_token_id=2, pad_token_id=1),
        "full": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     vocab_size=49408, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu")}


def hidden_size(unet, processor_name: str) -> int:
    """The hidden width of the UNet block that owns attention processor ``processor_name``."""
    channels = unet.config.block_out_channels
    if processor_name.startswith("mid_block"):
        return channels[-1]
    block = int(processor_name.split(".")[1])
    return channels[block] if processor_name.startswith("down_blocks") else list(reversed(channels))[block]


def ip_adapter_state_dict(unet, image_embed_dim: int, seed: int = 0) -> dict:
    """A random plain IP-Adapter (4 image tokens) in the original file layout: {"image_proj", "ip_adapter"}."""
    gen = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    image_proj = {"proj.weight": torch.randn(4 * cross, image_embed_dim, generator=gen) * image_embed_dim ** -0.5,
                  "proj.bias": torch.zeros(4 * cross), "norm.weight": torch.ones(cross),
                  "norm.bias": torch.zeros(cross)}
    ip, key_id = {}, 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        hidden = hidden_size(unet, name)
        for part in ("to_k_ip", "to_v_ip"):
            ip[f"{key_id}.{part}.weight"] = torch.randn(hidden, cross, generator=gen) * cross ** -0.5
        key_id += 2   # the original files number self- and cross-attention layers together
    return {"image_proj": image_proj, "ip_adapter": ip}


def load_ip_adapter_plus(unet, image_embed_dim: int, tokens: int = 16, seed: int = 0) -> None:
    """IP-Adapter Plus from config: the perceiver resampler and ``IPAdapterAttnProcessor2_0`` on every attn2."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import IPAdapterPlusImageProjection, MultiIPAdapterImageProjection

    torch.manual_seed(seed)
    cross = unet.config.cross_attention_dim
    procs = {}
    for name, proc in unet.attn_processors.items():
        procs[name] = type(proc)() if name.endswith("attn1.processor") else IPAdapterAttnProcessor2_0(
            hidden_size=hidden_size(unet, name), cross_attention_dim=cross, num_tokens=(tokens,), scale=1.0)
    unet.set_attn_processor(procs)
    proj = IPAdapterPlusImageProjection(embed_dims=image_embed_dim, output_dims=cross, hidden_dims=32, depth=1,
                                        dim_head=8, heads=2, num_queries=tokens, ffn_ratio=1)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection([proj]).eval()
    unet.config.encoder_hid_dim_type = "ip_image_proj"


def _clip_vision(size: str):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(**component_config("clip_vision", size)["config"]))


def _text_encoder(size: str, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(CLIPTextConfig(**TEXT[size]))


SDXL_TIME_EMBED = {"tiny": 8}   # addition_time_embed_dim (full-size SDXL: load a folder with model.path)
CONTROLNET_EMBEDDING = {"tiny": (16, 16, 32, 32), "full": (16, 32, 96, 256)}   # one stride-2 step per VAE level


def _components(pipeline: str, kind, size: str, ip_adapter: str | None) -> dict:
    """The constructor arguments of a pipeline of ``kind`` (``diffusers_kinds.KINDS``) at ``size``."""
    from diffusers import ControlNetModel
    from transformers import CLIPImageProcessor

    if kind.context == "example":
        proj = component_config("clip_vision", size)["proj_size"]
        return dict(vae=build_vae(size), image_encoder=build_pbe_image_encoder(size),
                    unet=build_unet(size, in_channels=kind.in_channels, cross_attention_dim=proj),
                    safety_checker=None, feature_extractor=CLIPImageProcessor())
    image_encoder = _clip_vision(size) if ip_adapter else None
    hidden = TEXT[size]["hidden_size"]
    if kind.context == "sdxl":
        if size not in SDXL_TIME_EMBED:
            raise ValueError(f"no from-config build of {pipeline} at size {size!r}: load a folder with model.path")
        time_dim = SDXL_TIME_EMBED[size]
        unet = build_unet(size, in_channels=4, cross_attention_dim=2 * hidden, addition_embed_type="text_time",
                          addition_time_embed_dim=time_dim,
                          projection_class_embeddings_input_dim=TEXT[size]["projection_dim"] + 6 * time_dim)
        return dict(vae=build_vae(size), text_encoder=_text_encoder(size),
                    text_encoder_2=_text_encoder(size, projection=True), tokenizer=None, tokenizer_2=None, unet=unet,
                    image_encoder=image_encoder, feature_extractor=None, add_watermarker=False)
    unet = build_unet(size, in_channels=kind.in_channels, cross_attention_dim=hidden)
    parts = dict(vae=build_vae(size), text_encoder=_text_encoder(size), tokenizer=None, unet=unet,
                 safety_checker=None, feature_extractor=None, image_encoder=image_encoder,
                 requires_safety_checker=False)
    if kind.control:
        parts["controlnet"] = ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=CONTROLNET_EMBEDDING[size])
    return parts


def build_pipeline(pipeline: str, size: str, device="cpu", ip_adapter: str | None = None, seed: int = 0):
    """A pipeline of any ``model=diffusers`` kind (``diffusers_kinds.KINDS``) from config; every kind but
    Paint-by-Example with an IP-Adapter "plain", "plus" or None."""
    import diffusers

    from i2am.adapters.diffusers.kinds import KINDS

    if pipeline not in KINDS:
        raise ValueError(f"no from-config build for {pipeline!r}: {sorted(KINDS)} (load other pipelines with "
                         f"model.path)")
    kind = KINDS[pipeline]
    device = torch.device(device)
    torch.manual_seed(seed)
    with on_device(device):
        pipe = getattr(diffusers, pipeline)(scheduler=make_scheduler("ddim"),
                                            **_components(pipeline, kind, size, ip_adapter))
        if ip_adapter is not None and kind.context != "example":
            embed_dim = pipe.image_encoder.config.projection_dim
            if ip_adapter == "plain":
                state = ip_adapter_state_dict(pipe.unet, embed_dim, seed=seed + 1)
                pipe.unet._load_ip_adapter_weights([state], low_cpu_mem_usage=False)
            elif ip_adapter == "plus":
                load_ip_adapter_plus(pipe.unet, pipe.image_encoder.config.hidden_size, seed=seed + 1)
            else:
                raise ValueError(f"model.ip_adapter.kind={ip_adapter!r}: choose plain, plus or null")
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    return pipe
