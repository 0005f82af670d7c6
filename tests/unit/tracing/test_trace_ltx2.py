"""i2am.trace on LTX2ImageToVideoPipeline (a tiny build from config, with its audio stream): relation
"image:reference" is each block's video self-attention (attn1) from the generated latent frames 1..F-1 to the
reference frame 0, recomputed here in float64 from the q and k the processor hands dispatch_attention_fn (after its
q/k norms and the rotary embedding), the unperturbed call of each step recorded (CFG rows [negative, positive]), its
STG and modality-isolation calls skipped. Also the pipeline facts the trace relies on."""
from __future__ import annotations

import pytest
import torch
from diffusers.models.transformers import transformer_ltx2

import i2am
from i2am import toy
from i2am.adapters.diffusers.video.ltx2_tiny import LTX2_PIPELINE, build_ltx2_pipeline
from i2am.engine import CaptureConfig
from i2am.tracing.ltx2 import ltx2_layer_specs

HEIGHT, WIDTH, FRAMES = 32, 64, 9
GRID = (5, 16, 32)                         # latent frames (9 - 1) / 2 + 1, and the 16 x 32 cells (VAE / 2, patch 1)
CELLS = GRID[1] * GRID[2]
BLOCKS, HEADS = 2, 2
RTOL, ATOL = 1e-5, 1e-7                    # float32 capture vs float64 reference of the same q and k
UNGUIDED = {"stg_scale": 0.0, "audio_stg_scale": 0.0, "modality_scale": 1.0, "audio_modality_scale": 1.0}
LAYERS = [f"image:reference/transformer_blocks.{i}.attn1" for i in range(BLOCKS)]


@pytest.fixture(scope="module")
def pipe():
    return toy.pipeline(LTX2_PIPELINE)


def inputs(pipe, batch: int = 1, guided: bool = True, seeds=(0,)) -> dict:
    """The call's arguments: per-sample generators (so a sample's noise is the same alone or in a batch). CFG is on
    when the video or the audio guidance scale exceeds 1 (the audio one defaults to 7)."""
    prompt = toy.prompt(pipe, batch=batch, negative=guided)
    return {**prompt, "image": [toy.image(HEIGHT, WIDTH, seed=s) for s in seeds], "image_crf": 0,
            "height": HEIGHT, "width": WIDTH, "num_frames": FRAMES, "frame_rate": 25.0,
            "guidance_scale": 3.0 if guided else 1.0, "audio_guidance_scale": 7.0 if guided else 1.0,
            "output_type": "latent", "generator": [torch.Generator().manual_seed(s) for s in seeds]}


def _run(pipe, steps: int, **kwargs):
    out = pipe(num_inference_steps=steps, **kwargs)
    return out.frames, out.audio


def recording(monkeypatch, pipe) -> dict[str, list]:
    """Per relation, (q, k) in float64 [B, L, heads, d] of every call of the video self-attention (attn1, relation
    "image:reference") and the video-to-text cross-attention (attn2, "text") in an unperturbed transformer call,
    recorded at the ``dispatch_attention_fn`` the processors call."""
    calls, state = {"image:reference": [], "text": []}, {"unperturbed": False}
    original = transformer_ltx2.dispatch_attention_fn
    video_tokens = GRID[0] * CELLS

    def dispatch(query, key, value, **kwargs):
        video = query.shape[1] == video_tokens and query.shape[-1] == 8   # video queries: 2 heads of 8
        if state["unperturbed"] and video and key.shape[1] in (video_tokens, toy.TEXT_TOKENS):   # not audio keys
            relation = "image:reference" if key.shape[1] == video_tokens else "text"
            calls[relation].append((query.double(), key.double()))
        return original(query, key, value, **kwargs)

    def on_call(module, args, kwargs):
        state["unperturbed"] = not kwargs["spatio_temporal_guidance_blocks"] and not kwargs["isolate_modalities"]

    monkeypatch.setattr(transformer_ltx2, "dispatch_attention_fn", dispatch)
    handle = pipe.transformer.register_forward_pre_hook(on_call, with_kwargs=True)
    return calls, handle


def naive(calls, guided: bool, relation: str) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per block, R2G [B, heads, F-1, h, w] and G2R [B, heads, F-1, keys] summed over the recorded calls: queries the
    tokens of latent frames 1.., keys those of frame 0 (image:reference) or the prompt tokens (text)."""
    out = {}
    for index, (q, k) in enumerate(calls[relation]):
        block = index % BLOCKS
        if guided:                                                 # rows [negative, positive]: the positive ones
            q, k = q.chunk(2)[1], k.chunk(2)[1]
        queries, keys = q[:, CELLS:], (k[:, :CELLS] if relation == "image:reference" else k)
        logits = torch.einsum("bqhd,bkhd->bhqk", queries, keys) / q.shape[-1] ** 0.5
        r2g = torch.softmax(logits, dim=-2).mean(-1).reshape(q.shape[0], HEADS, GRID[0] - 1, *GRID[1:])
        g2r = torch.softmax(logits, dim=-1).reshape(q.shape[0], HEADS, GRID[0] - 1, CELLS, -1).sum(-2) / CELLS
        r, g = out.get(block, (0, 0))
        out[block] = (r + r2g, g + g2r)
    return out


@pytest.mark.parametrize("guided", [True, False])
def test_trace_equals_the_naive_reference_of_the_processors_own_q_and_k(pipe, monkeypatch, guided):
    calls, handle = recording(monkeypatch, pipe)
    try:
        with i2am.trace(pipe) as tr:
            _run(pipe, 2, **inputs(pipe, guided=guided))
    finally:
        handle.remove()
    assert tr.relations == ["image:reference", "text"]
    assert tr.maps.meta["cfg_layout"].startswith("chunk 1 of 2" if guided else "chunk 0 of 1")
    assert tr.maps.meta["video"] == {"temporal_ratio": 2, "spatial_ratio": 2, "first_latent_frame": 1}
    for relation, ref_grid in (("image:reference", list(GRID[1:])), ("text", [1, toy.TEXT_TOKENS])):
        maps = tr.maps.relation(relation)
        assert maps.steps == 2 and maps.frames == GRID[0] - 1 and len(calls[relation]) == 2 * BLOCKS
        assert [m["query_grid"] for m in maps.meta["layers"]] == [[GRID[0] - 1, *GRID[1:]]] * BLOCKS
        assert [m["ref_grid"] for m in maps.meta["layers"]] == [ref_grid] * BLOCKS
        for block, (r2g, g2r) in naive(calls, guided, relation).items():
            name = f"{relation}/transformer_blocks.{block}.attn{1 if relation == 'image:reference' else 2}"
            torch.testing.assert_close(maps.raw[f"r2g/{name}"].sum(1).double(), r2g, rtol=RTOL, atol=ATOL)
            torch.testing.assert_close(maps.raw[f"g2r/{name}"].sum(1).double().flatten(-2), g2r, rtol=RTOL,
                                       atol=ATOL)


def test_a_text_mask_that_removes_keys_is_refused(pipe, monkeypatch):
    """The connectors hand the transformer an all-ones text mask (they handle the prompt's padding themselves), so
    attn2 attends to every connector token. Constructed case: connectors whose mask drops the last two tokens; the
    scores would not apply it, so the trace raises naming the layer, and runs with the text layers left out."""
    original = pipe.connectors.forward

    def connectors(*args, **kwargs):
        video, audio, mask = original(*args, **kwargs)
        mask = mask.clone()
        mask[:, -2:] = 0
        return video, audio, mask

    monkeypatch.setattr(pipe.connectors, "forward", connectors)
    refused = r"text/transformer_blocks\.0\.attn2: its attention call masks some keys"
    with pytest.raises(RuntimeError, match=refused), i2am.trace(pipe):
        _run(pipe, 1, **inputs(pipe))
    with i2am.trace(pipe, CaptureConfig(layers=LAYERS)) as tr:
        _run(pipe, 1, **inputs(pipe))
    assert tr.maps.relations == ["image:reference"]


def test_the_keys_are_the_reference_frame_after_the_rotary_embedding(pipe, monkeypatch):
    """Constructed case: the video self-attention's q and k with frame 0's tokens zeroed after the rotary embedding.
    Keys of frame 0 are then all zero, so every generated query's softmax over them is uniform (G2R = 1 / (h w) per
    frame and step) and so is each of their softmaxes over the generated queries (R2G = 1 / ((F-1) h w)); keys read
    from any other frame, or before the rotary embedding, would not give these."""
    original = transformer_ltx2.apply_split_rotary_emb
    video_tokens, width = GRID[0] * CELLS, pipe.transformer.config.num_attention_heads * 8

    def rotary(x, freqs):
        out = original(x, freqs)
        if out.shape[1:] == (video_tokens, width):   # attn1's q or k: zero the reference frame's tokens
            out = out.clone()
            out[:, :CELLS] = 0
        return out

    with i2am.trace(pipe) as tr:
        _run(pipe, 1, **inputs(pipe, guided=False))
    plain = tr.maps.relation("image:reference")
    monkeypatch.setattr(transformer_ltx2, "apply_split_rotary_emb", rotary)
    with i2am.trace(pipe) as tr:
        _run(pipe, 1, **inputs(pipe, guided=False))
    zeroed = tr.maps.relation("image:reference")
    for name in LAYERS:   # one step, one time group: the raw sums are that step's maps
        g2r, r2g = zeroed.raw[f"g2r/{name}"], zeroed.raw[f"r2g/{name}"]
        torch.testing.assert_close(g2r, torch.full_like(g2r, 1 / CELLS), rtol=1e-5, atol=0)
        torch.testing.assert_close(r2g, torch.full_like(r2g, 1 / ((GRID[0] - 1) * CELLS)), rtol=1e-5, atol=0)
        assert not torch.allclose(plain.raw[f"g2r/{name}"], g2r, rtol=1e-2)   # the real keys are not uniform


def _hook_count(pipe) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.transformer.modules())


def test_outputs_unchanged_and_everything_restored(pipe):
    processors = {n: m.processor for n, m in pipe.transformer.named_modules() if hasattr(m, "processor")}
    hooks, dispatch = _hook_count(pipe), transformer_ltx2.dispatch_attention_fn
    video, audio = _run(pipe, 2, **inputs(pipe))
    with i2am.trace(pipe) as tr:
        traced_video, traced_audio = _run(pipe, 2, **inputs(pipe))
    assert torch.equal(video, traced_video) and torch.equal(audio, traced_audio)
    assert tr.maps.meta["cfg_layout"] == ("chunk 1 of 2 of the unperturbed call; the spatio-temporal and "
                                          "modality-isolation guidance calls skipped")
    assert {n: m.processor for n, m in pipe.transformer.named_modules() if hasattr(m, "processor")} == processors
    assert _hook_count(pipe) == hooks and transformer_ltx2.dispatch_attention_fn is dispatch
    assert "prepare_latents" not in vars(pipe) and "step" not in vars(pipe.scheduler)


def test_only_the_unperturbed_call_is_recorded(pipe):
    """Without STG and modality guidance the pipeline calls the transformer once per step: the same maps."""
    with i2am.trace(pipe) as all_calls:
        _run(pipe, 2, **inputs(pipe, guided=False))
    with i2am.trace(pipe) as one_call:
        _run(pipe, 2, **inputs(pipe, guided=False), **UNGUIDED)
    assert one_call.maps.meta["cfg_layout"] == "chunk 0 of 1"
    assert all_calls.maps.steps == one_call.maps.steps == 2
    # the first step's unperturbed call sees the same inputs; the second step's latents depend on the guidance calls
    for key, value in all_calls.maps.raw.items():
        assert value.shape == one_call.maps.raw[key].shape
    with i2am.trace(pipe) as first_all:
        _run(pipe, 1, **inputs(pipe, guided=False))
    with i2am.trace(pipe) as first_one:
        _run(pipe, 1, **inputs(pipe, guided=False), **UNGUIDED)
    for key, value in first_all.maps.raw.items():
        assert torch.equal(value, first_one.maps.raw[key]), key   # the same call on the same batch


def test_batch_invariance(pipe):
    with i2am.trace(pipe) as tr:
        _run(pipe, 1, **inputs(pipe, batch=2, guided=False, seeds=(0, 1)))
    batched = tr.maps
    prompt = toy.prompt(pipe, batch=2, negative=False)
    for i, seed in enumerate((0, 1)):
        alone = {**inputs(pipe, guided=False, seeds=(seed,)),
                 **{key: value[i:i + 1] for key, value in prompt.items()}}
        with i2am.trace(pipe) as tr:
            _run(pipe, 1, **alone)
        for key, value in tr.maps.raw.items():
            # a batch of 2 runs other GEMM blockings than a batch of 1: float32 rounding, not exact
            torch.testing.assert_close(batched.raw[key][i:i + 1], value, rtol=1e-4, atol=1e-6)


def test_reference_is_the_clean_first_latent_frame(pipe):
    """The facts the relation rests on: frame-major tokens whose latent frame 0 has timestep 0 in every call and
    never changes between steps, while the later frames are denoised; three transformer calls a step (the
    unperturbed one, STG, modality isolation) by default; no video self-attention mask."""
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append({**kwargs, "hidden_states": kwargs["hidden_states"].clone()}),
        with_kwargs=True)
    try:
        _run(pipe, 2, **inputs(pipe, guided=False))
    finally:
        handle.remove()
    assert len(calls) == 6
    assert [(bool(c["spatio_temporal_guidance_blocks"]), c["isolate_modalities"]) for c in calls[:3]] == [
        (False, False), (True, False), (False, True)]
    assert all(c.get("video_self_attention_mask") is None for c in calls)
    assert (calls[0]["num_frames"], calls[0]["height"], calls[0]["width"]) == GRID
    for call in calls:
        timestep = call["timestep"]
        assert torch.all(timestep[:, :CELLS] == 0) and torch.all(timestep[:, CELLS:] > 0)
    before, after = calls[0]["hidden_states"], calls[3]["hidden_states"]
    assert torch.equal(before[:, :CELLS], after[:, :CELLS])   # the reference frame is never denoised
    assert not torch.equal(before[:, CELLS:], after[:, CELLS:])


def test_other_ltx2_pipelines_and_processors_are_refused(pipe):
    from diffusers import LTX2Pipeline

    text_to_video = LTX2Pipeline(scheduler=pipe.scheduler, vae=pipe.vae, audio_vae=pipe.audio_vae, text_encoder=None,
                                 tokenizer=None, connectors=pipe.connectors, transformer=pipe.transformer,
                                 vocoder=pipe.vocoder)
    with pytest.raises(ValueError, match="LTX2Pipeline runs an LTX-2 transformer, but only"):
        i2am.trace(text_to_video)

    class OtherProcessor(transformer_ltx2.LTX2AudioVideoAttnProcessor):
        pass

    other = build_ltx2_pipeline().transformer
    other.transformer_blocks[1].attn1.set_processor(OtherProcessor())
    with pytest.raises(ValueError, match=r"transformer_blocks\.1\.attn1 runs processor OtherProcessor"):
        ltx2_layer_specs(other)

