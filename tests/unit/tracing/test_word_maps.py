"""DAAM's word heat maps (``AttributionMaps.daam_word_maps``) on UNet and DiT traces alike, labelled with the words of
the pipeline's own tokenizer (a real tokenizer built in memory)."""
import torch
from helpers.word_tokenizer import word_tokenizer

import i2am
from i2am import toy
from i2am.engine import CaptureConfig
from i2am.engine.joint import word_maps
from i2am.viz.plot import plot_words
from i2am.viz.words import word_labels

STEPS = 2
PROMPT = "a red dress"


def _check_word_maps(maps, layer, pipe, tokens, grid):
    words = maps.daam_word_maps(layer)
    assert words.shape == (1, tokens, *grid)
    # per generated position and step, the shares of all tokens add up to 1: their sum is constant
    torch.testing.assert_close(words.sum(1), torch.full((1, *grid), float(STEPS)), rtol=1e-5, atol=1e-5)
    assert torch.equal(word_maps(maps, layer), words)                       # the older name, same maps
    assert torch.equal(maps.daam_word_maps(layer, reduce="mean"), words / STEPS)
    labels = word_labels(pipe, PROMPT, tokens)
    assert labels == ["a", "red", "dress"] + ["<pad>"] * (tokens - 3)
    fig = plot_words(maps, layer, words=labels, tokens=[0, 1, 2])
    titles = [ax.get_title().splitlines()[0] for ax in fig.axes if ax.get_images()]
    assert titles == ["0: a", "1: red", "2: dress"]


def test_word_maps_of_a_unet_trace():
    pipe = toy.pipeline("StableDiffusionPipeline")
    pipe.tokenizer = word_tokenizer(max_length=toy.TEXT_TOKENS)
    layer = "text/up_blocks.1.attentions.0.transformer_blocks.0.attn2"
    with i2am.trace(pipe, CaptureConfig(sram_layers=[layer])) as tr:
        pipe(**toy.prompt(pipe), num_inference_steps=STEPS, height=64, width=64, output_type="pt",
             generator=torch.Generator().manual_seed(0))
    grid = tuple(tr.maps.layer_meta(layer)["query_grid"])
    _check_word_maps(tr.maps, layer, pipe, toy.TEXT_TOKENS, grid)


def test_word_maps_of_a_dit_trace():
    pipe = toy.pipeline("FluxKontextPipeline")
    pipe.tokenizer_2 = word_tokenizer(max_length=512)          # FLUX's text tokens are T5's (tokenizer_2)
    prompt = toy.prompt(pipe)
    pe = prompt["prompt_embeds"]
    block = "transformer_blocks.0.attn"
    with i2am.trace(pipe, CaptureConfig(sram_layers=[block])) as tr:
        pipe(image=toy.image(96, 64), **prompt, height=64, width=64, _auto_resize=False, max_area=64 * 64,
             num_inference_steps=STEPS, output_type="pt", generator=torch.Generator().manual_seed(0))
    layer = f"text/{block}"
    grid = tuple(tr.maps.layer_meta(layer)["query_grid"])
    _check_word_maps(tr.maps, layer, pipe, pe.shape[1], grid)
    # the share normalisation per step: a cell's mass on each reference token is a probability, the sum over steps
    # is not (it reaches the step count)
    share = tr.maps.sram(f"share:image:reference/{block}", points=[(0, 0)], reduce="mean")
    assert float(share.min()) >= 0 and float(share.sum()) <= 1 + 1e-6
