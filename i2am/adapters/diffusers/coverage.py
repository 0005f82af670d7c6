"""Which image-conditioned pipelines of the installed diffusers i2am supports, and why the others are refused.

A pipeline is *image-conditioned* when its ``__call__`` takes an image-like input (a parameter in ``IMAGE_INPUTS``).
``COVERAGE`` classifies each such class by hand: *supported* with the relations its maps attribute and the entry
points that run it (``i2am.trace``, ``model=diffusers``), or *refused* with the reason. The table is checked
against the installed diffusers by tests/unit/adapters/test_diffusers_coverage.py; docs/pipeline_coverage.md is
generated from it:

    python -m i2am.adapters.diffusers.coverage --write docs/pipeline_coverage.md

Listing the classes imports every pipeline module of diffusers (its top level is lazy): about 5-10 s.
"""
from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass
from pathlib import Path

# ``__call__`` parameters through which an image, a video, or their encodings reach a pipeline.
IMAGE_INPUTS = frozenset({
    "image", "images", "input_images", "init_image", "original_image", "last_image", "ref_image", "reference_image",
    "reference_images", "image_reference", "example_image", "cond_image", "condtioning_image", "control_image",
    "control_mask", "control_video", "control_camera_video", "ip_adapter_image", "ip_adapter_image_embeds",
    "image_embeds", "image_embeddings", "image_latents", "mask_image", "mask_video", "masked_image_latents",
    "masked_video_latents", "gligen_images", "gligen_inpaint_image", "video", "frames", "conditioning_frames",
    "background_video", "face_video", "pose_video", "reference_latents", "conditions", "reference_conditions",
    "controls"})

TRACE = "i2am.trace"
CLI = "model=diffusers"


@dataclass(frozen=True)
class Coverage:
    supported: bool
    relations: tuple[str, ...] = ()   # supported: the relations the maps attribute
    entry_points: tuple[str, ...] = ()   # supported: TRACE, and CLI when the attribute loop runs it
    note: str = ""   # refused: why; supported: what the maps leave out, if anything


def supported(*relations: str, cli: bool = True, note: str = "") -> Coverage:
    return Coverage(True, relations, (TRACE, CLI) if cli else (TRACE,), note=note)


def refused(reason: str) -> Coverage:
    return Coverage(False, note=reason)


NOT_CLASSIFIED = "not supported yet: not classified beyond its signature"
VIDEO = ("video pipeline not traced yet: no i2am video trace reads how its conditioning reaches the frames "
         "(the video traces: docs/video_maps.md)")
NO_DENOISER = "no `unet` or `transformer` denoiser component, so i2am.trace finds nothing to capture"
UNTESTED_EDITOR = ("untested editor on a transformer i2am reads; refused by name under model=diffusers "
                   "(docs/dit_editors.md)")
UNTESTED_LAYOUT = ("untested: i2am.trace knows its 3-chunk CFG layout (i2am.engine.pipelines), but no test runs "
                   "it and model=diffusers has no kind for it")
WAN_CHANNELS = ("video maps (docs/video_maps.md); the reference's VAE latent also enters through the input channels, "
                "which no attention map sees; Wan 2.2 checkpoints (no image cross-attention) are refused")
CHRONOEDIT = ("video maps (docs/video_maps.md); the reference's VAE latent also enters through the input channels, "
              "which no attention map sees; temporal reasoning that drops frames for some steps "
              "(num_temporal_reasoning_steps > 0) is refused")
FRAMES_IN_BATCH = ("video maps (docs/video_maps.md); temporal attention is not captured (its queries are one "
                   "position's frames)")
SVD_NOTE = (FRAMES_IN_BATCH + "; R2G only: the context is one CLIP image token, so G2R, a softmax over a single "
            "key, is identically 1; the reference's VAE latent enters through the input channels, which no map sees")
I2VGEN_XL_NOTE = (FRAMES_IN_BATCH + "; image:reference is the reference's VAE latent as an 8 x 8 grid of context "
                  "tokens, image:clip its CLIP embedding as 4 tokens; the latent also enters through the input "
                  "channels, which no map sees")
SKYREELS_NOTE = ("video maps (docs/video_maps.md); image:reference is the reference's CLIP tokens in attn2's own keys "
                 "(as in Wan 2.1); its VAE latent enters through the input channels, which no map sees")
HUNYUAN_VIDEO15_NOTE = ("video maps (docs/video_maps.md) from the joint attention; image:reference is the "
                        "reference's SigLIP tokens (a square patch grid), text:glyph the byT5 tokens of the prompt's "
                        "quoted text (present when a sample has any), padding excluded as the model excludes it; its "
                        "VAE latent also enters through the input channels, which no map sees")
LTX2_NOTE = ("video maps (docs/video_maps.md) of the generated latent frames 1.. (frame 0 is the reference): "
             "image:reference is the video self-attention from them to the reference frame's tokens, whose latent "
             "replaces latent frame 0; text their cross-attention to the prompt's connector tokens; the later "
             "frames also read each other and the audio stream, which no map shows")
KV_CACHE = ("its Flux2KVAttnProcessor caches the reference keys between steps; i2am.trace raises naming the block "
            "and the processor")


def unread_transformer(name: str) -> str:
    return f"its transformer {name} is not one i2am's joint-attention capture reads (i2am.engine.packing)"


COVERAGE: dict[str, Coverage] = {
    # UNet pipelines (docs/pipelines.md)
    "StableDiffusionPipeline": supported("text", "image:ip_adapter", "image:reference",
                                         note="image:reference through model.reference_attention"),
    "StableDiffusionImg2ImgPipeline": supported("text", "image:ip_adapter",
                                                note="the image is the start code, not attributed"),
    "StableDiffusionInpaintPipeline": supported("text", "image:ip_adapter",
                                                note="the image and mask enter through input channels only"),
    "StableDiffusionXLPipeline": supported("text", "image:ip_adapter"),
    "StableDiffusionControlNetPipeline": supported("text", note="text in groups unet and controlnet; the control "
                                                               "image enters through the ControlNet residuals only"),
    "StableDiffusionInstructPix2PixPipeline": supported("text", note="the image enters through input channels only"),
    "PaintByExamplePipeline": supported("image:example", note="the scene and mask enter through input channels"),
    # diffusion-transformer editors (docs/dit_editors.md)
    "FluxKontextPipeline": supported("text", "image:reference"),
    "Flux2Pipeline": supported("text", "image:reference", "image:reference.1", note="one relation per reference"),
    "Flux2KleinPipeline": supported("text", "image:reference", cli=False),
    "QwenImageEditPipeline": supported("text", "image:reference"),
    "QwenImageEditPlusPipeline": supported("text", "image:reference", "image:reference.1",
                                           note="one relation per reference; model=diffusers: one reference per call"),
    "FluxKontextInpaintPipeline": supported("text", "image:reference",
                                            note="image:reference is image_reference; the image outside the mask is "
                                                 "pasted by the pipeline, not attributed"),
    "LongCatImageEditPipeline": supported("text", "image:reference",
                                          note="model=diffusers: generated at model.image_size, the reference "
                                               "resized to it, a fixed text embedding, no CFG"),
    "JoyImageEditPipeline": supported("text", "image:reference",
                                      note="model=diffusers: generated at model.image_size (not its 1024x1024-area "
                                           "bucket), the reference cropped to it and encoded to its VAE mode, a "
                                           "fixed text embedding, no CFG"),
    "StableDiffusion3Pipeline": supported("text", note="its IP-Adapter (ip_adapter_image) is not traced"),
    # image-to-video UNets folding the frames into the batch (docs/pipelines.md, "Image-to-video UNet pipelines")
    "StableVideoDiffusionPipeline": supported("image:clip", note=SVD_NOTE),
    "I2VGenXLPipeline": supported("text", "image:reference", "image:clip", note=I2VGEN_XL_NOTE),
    # its transformer is Wan 2.1's (i2am.tracing.video)
    "SkyReelsV2ImageToVideoPipeline": supported("image:reference", "text", note=SKYREELS_NOTE),
    # refused
    "AltDiffusionImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "AltDiffusionPipeline": refused(NOT_CLASSIFIED),
    "AmusedImg2ImgPipeline": refused(unread_transformer("UVit2DModel")),
    "AmusedInpaintPipeline": refused(unread_transformer("UVit2DModel")),
    "AnimateDiffControlNetPipeline": refused(VIDEO),
    "AnimateDiffPAGPipeline": refused(VIDEO),
    "AnimateDiffPipeline": refused(VIDEO),
    "AnimateDiffSDXLPipeline": refused(VIDEO),
    "AnimateDiffSparseControlNetPipeline": refused(VIDEO),
    "AnimateDiffVideoToVideoControlNetPipeline": refused(VIDEO),
    "AnimateDiffVideoToVideoPipeline": refused(VIDEO),
    "AnyFlowFARPipeline": refused(VIDEO),
    "AnyFlowPipeline": refused(VIDEO),
    "BlipDiffusionControlNetPipeline": refused(NOT_CLASSIFIED),
    "BlipDiffusionPipeline": refused(NOT_CLASSIFIED),
    "BriaFibo2Pipeline": refused(unread_transformer("BriaFibo2Transformer2DModel")),
    "BriaFiboEditPipeline": refused(unread_transformer("BriaFiboTransformer2DModel")),
    "ChromaImg2ImgPipeline": refused(unread_transformer("ChromaTransformer2DModel")),
    "ChromaInpaintPipeline": refused(unread_transformer("ChromaTransformer2DModel")),
    "ChromaPipeline": refused(unread_transformer("ChromaTransformer2DModel")),
    "ChronoEditPipeline": supported("image:reference", "text", note=CHRONOEDIT),
    "CogVideoXFunControlPipeline": refused(VIDEO),
    "CogVideoXImageToVideoPipeline": refused(VIDEO),
    "CogVideoXVideoToVideoPipeline": refused(VIDEO),
    "CogView4ControlPipeline": refused(unread_transformer("CogView4Transformer2DModel")),
    "ConsisIDPipeline": refused(VIDEO),
    "Cosmos2VideoToWorldPipeline": refused(VIDEO),
    "Cosmos2_5_PredictBasePipeline": refused(VIDEO),
    "Cosmos2_5_TransferPipeline": refused(VIDEO),
    "Cosmos3OmniPipeline": refused(VIDEO),
    "CosmosVideoToWorldPipeline": refused(VIDEO),
    "CycleDiffusionPipeline": refused(NOT_CLASSIFIED),
    "DiffusionGemmaPipeline": refused(NO_DENOISER),
    "DreamLiteMobilePipeline": refused(NOT_CLASSIFIED),
    "DreamLitePipeline": refused(NOT_CLASSIFIED),
    "EasyAnimateControlPipeline": refused(VIDEO),
    "EasyAnimateInpaintPipeline": refused(VIDEO),
    "Flux2KleinInpaintPipeline": refused(UNTESTED_EDITOR),
    "Flux2KleinKVPipeline": refused(KV_CACHE),
    "FluxControlImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "FluxControlInpaintPipeline": refused(NOT_CLASSIFIED),
    "FluxControlNetImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "FluxControlNetInpaintPipeline": refused(NOT_CLASSIFIED),
    "FluxControlNetPipeline": refused(NOT_CLASSIFIED),
    "FluxControlPipeline": refused(NOT_CLASSIFIED),
    "FluxFillPipeline": refused(NOT_CLASSIFIED),
    "FluxImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "FluxInpaintPipeline": refused(NOT_CLASSIFIED),
    "FluxPipeline": refused(NOT_CLASSIFIED),
    "FluxPriorReduxPipeline": refused(NO_DENOISER),
    "GlmImagePipeline": refused(unread_transformer("GlmImageTransformer2DModel")),
    "HeliosPipeline": refused(VIDEO),
    "HeliosPyramidPipeline": refused(VIDEO),
    "HunyuanDiTControlNetPipeline": refused(unread_transformer("HunyuanDiT2DModel")),
    "HunyuanImageRefinerPipeline": refused(unread_transformer("HunyuanImageTransformer2DModel")),
    "HunyuanSkyreelsImageToVideoPipeline": refused(VIDEO),
    "HunyuanVideo15ImageToVideoPipeline": supported("image:reference", "text", "text:glyph",
                                                    note=HUNYUAN_VIDEO15_NOTE),
    "HunyuanVideoFramepackPipeline": refused(VIDEO),
    "HunyuanVideoImageToVideoPipeline": refused(VIDEO),
    "IFImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "IFImg2ImgSuperResolutionPipeline": refused(NOT_CLASSIFIED),
    "IFInpaintingPipeline": refused(NOT_CLASSIFIED),
    "IFInpaintingSuperResolutionPipeline": refused(NOT_CLASSIFIED),
    "IFSuperResolutionPipeline": refused(NOT_CLASSIFIED),
    "JoyImageEditPlusPipeline": refused(unread_transformer("JoyImageEditPlusTransformer3DModel")),
    "Kandinsky3Img2ImgPipeline": refused(NOT_CLASSIFIED),
    "Kandinsky5I2IPipeline": refused(unread_transformer("Kandinsky5Transformer3DModel")),
    "Kandinsky5I2VPipeline": refused(VIDEO),
    "Kandinsky6SRPipeline": refused(VIDEO),
    "Kandinsky6TI2VAPipeline": refused(VIDEO),
    "KandinskyImg2ImgCombinedPipeline": refused(NOT_CLASSIFIED),
    "KandinskyImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "KandinskyInpaintCombinedPipeline": refused(NOT_CLASSIFIED),
    "KandinskyInpaintPipeline": refused(NOT_CLASSIFIED),
    "KandinskyPipeline": refused(NOT_CLASSIFIED),
    "KandinskyV22ControlnetImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "KandinskyV22ControlnetPipeline": refused(NOT_CLASSIFIED),
    "KandinskyV22Img2ImgCombinedPipeline": refused(NOT_CLASSIFIED),
    "KandinskyV22Img2ImgPipeline": refused(NOT_CLASSIFIED),
    "KandinskyV22InpaintCombinedPipeline": refused(NOT_CLASSIFIED),
    "KandinskyV22InpaintPipeline": refused(NOT_CLASSIFIED),
    "KandinskyV22Pipeline": refused(NOT_CLASSIFIED),
    "KandinskyV22PriorEmb2EmbPipeline": refused(NO_DENOISER),
    "LDMSuperResolutionPipeline": refused(NOT_CLASSIFIED),
    "LTX2ConditionPipeline": refused(VIDEO),
    "LTX2DFRPipeline": refused(VIDEO),
    "LTX2DFRTemporalRefinePipeline": refused(VIDEO),
    "LTX2HDRPipeline": refused(VIDEO),
    "LTX2ImageToVideoPipeline": supported("image:reference", "text", note=LTX2_NOTE),
    "LTX2InContextPipeline": refused(VIDEO),
    "LTX2LatentUpsamplePipeline": refused(VIDEO),
    "LTXConditionPipeline": refused(VIDEO),
    "LTXI2VLongMultiPromptPipeline": refused(VIDEO),
    "LTXImageToVideoPipeline": refused(VIDEO),
    "LTXLatentUpsamplePipeline": refused(VIDEO),
    "LatentConsistencyModelImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "LatentConsistencyModelPipeline": refused(NOT_CLASSIFIED),
    "LucyEditPipeline": refused(VIDEO),
    "MarigoldDepthPipeline": refused(NOT_CLASSIFIED),
    "MarigoldIntrinsicsPipeline": refused(NOT_CLASSIFIED),
    "MarigoldNormalsPipeline": refused(NOT_CLASSIFIED),
    "MotifVideoImage2VideoPipeline": refused(VIDEO),
    "OmniGenPipeline": refused(unread_transformer("OmniGenTransformer2DModel")),
    "PIAPipeline": refused(VIDEO),
    "QwenImage21Pipeline": refused(unread_transformer("QwenImage21Transformer2DModel")),
    "QwenImageControlNetInpaintPipeline": refused(NOT_CLASSIFIED),
    "QwenImageControlNetPipeline": refused(NOT_CLASSIFIED),
    "QwenImageEditInpaintPipeline": refused(UNTESTED_EDITOR),
    "QwenImageImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "QwenImageInpaintPipeline": refused(NOT_CLASSIFIED),
    "QwenImageLayeredPipeline": refused(NOT_CLASSIFIED),
    "RePaintPipeline": refused(NOT_CLASSIFIED),
    "SanaControlNetPipeline": refused(unread_transformer("SanaTransformer2DModel")),
    "SanaImageToVideoPipeline": refused(VIDEO),
    "SanaSprintImg2ImgPipeline": refused(unread_transformer("SanaTransformer2DModel")),
    "SanaVideoPipeline": refused(VIDEO),
    "SanaWMPipeline": refused(VIDEO),
    "ShapEImg2ImgPipeline": refused(NO_DENOISER),
    "SkyReelsV2DiffusionForcingImageToVideoPipeline": refused(VIDEO),
    "SkyReelsV2DiffusionForcingVideoToVideoPipeline": refused(VIDEO),
    "StableCascadeCombinedPipeline": refused(NO_DENOISER),
    "StableCascadeDecoderPipeline": refused(NO_DENOISER),
    "StableCascadePriorPipeline": refused(NO_DENOISER),
    "StableDiffusion3ControlNetInpaintingPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusion3ControlNetPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusion3Img2ImgPipeline": refused(UNTESTED_EDITOR),
    "StableDiffusion3InpaintPipeline": refused(UNTESTED_EDITOR),
    "StableDiffusion3PAGImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionAdapterPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionControlNetImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionControlNetInpaintPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionControlNetPAGInpaintPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionControlNetPAGPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionControlNetXSPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionDepth2ImgPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionDiffEditPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionGLIGENPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionGLIGENTextImagePipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionImageVariationPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionLDM3DPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionLatentUpscalePipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionPAGImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionPAGInpaintPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionPAGPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionPanoramaPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionSAGPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionUpscalePipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLAdapterPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLControlNetImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLControlNetInpaintPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLControlNetPAGImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLControlNetPAGPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLControlNetPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLControlNetUnionImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLControlNetUnionInpaintPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLControlNetUnionPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLControlNetXSPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLInpaintPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLInstructPix2PixPipeline": refused(UNTESTED_LAYOUT),
    "StableDiffusionXLPAGImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLPAGInpaintPipeline": refused(NOT_CLASSIFIED),
    "StableDiffusionXLPAGPipeline": refused(NOT_CLASSIFIED),
    "StableUnCLIPImg2ImgPipeline": refused(NOT_CLASSIFIED),
    "UnCLIPImageVariationPipeline": refused(NO_DENOISER),
    "UniDiffuserPipeline": refused(NOT_CLASSIFIED),
    "VersatileDiffusionDualGuidedPipeline": refused(NO_DENOISER),
    "VersatileDiffusionImageVariationPipeline": refused(NO_DENOISER),
    "VideoToVideoSDPipeline": refused(VIDEO),
    "VisualClozeGenerationPipeline": refused(NOT_CLASSIFIED),
    "VisualClozePipeline": refused(NOT_CLASSIFIED),
    "WanAnimatePipeline": refused(VIDEO),
    "WanImageToVideoPipeline": supported("image:reference", "text", note=WAN_CHANNELS),
    "WanVACEPipeline": refused(VIDEO),
    "WanVideoToVideoPipeline": refused(VIDEO),
    "WuerstchenDecoderPipeline": refused(NO_DENOISER),
    "ZImageControlNetInpaintPipeline": refused(unread_transformer("ZImageTransformer2DModel")),
    "ZImageControlNetPipeline": refused(unread_transformer("ZImageTransformer2DModel")),
    "ZImageImg2ImgPipeline": refused(unread_transformer("ZImageTransformer2DModel")),
    "ZImageInpaintPipeline": refused(unread_transformer("ZImageTransformer2DModel")),
    "ZImageOmniPipeline": refused(unread_transformer("ZImageTransformer2DModel")),
}


def pipeline_classes() -> dict[str, type]:
    """Every pipeline class the installed diffusers exports at its top level."""
    import diffusers

    classes = {}
    for name in sorted(dir(diffusers)):
        if not name.endswith("Pipeline"):
            continue
        cls = getattr(diffusers, name, None)
        if isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline):
            classes[name] = cls
    return classes


def image_inputs(cls: type) -> list[str]:
    """The image-like parameters of a pipeline's ``__call__``."""
    return sorted(set(inspect.signature(cls.__call__).parameters) & IMAGE_INPUTS)


def image_conditioned() -> dict[str, list[str]]:
    """Image-conditioned pipeline class name -> its image-like ``__call__`` parameters."""
    found = {name: image_inputs(cls) for name, cls in pipeline_classes().items()}
    return {name: params for name, params in found.items() if params}


def render() -> str:
    """The Markdown page docs/pipeline_coverage.md."""
    import diffusers

    found = image_conditioned()
    rows = []
    for name, params in found.items():
        entry = COVERAGE.get(name, refused(NOT_CLASSIFIED))
        inputs = ", ".join(f"`{p}`" for p in params)
        if entry.supported:
            relations = ", ".join(f"`{r}`" for r in entry.relations)
            detail = relations + (f" ({entry.note})" if entry.note else "")
            status = "supported: " + ", ".join(f"`{e}`" for e in entry.entry_points)
        else:
            detail, status = entry.note, "refused"
        rows.append(f"| `{name}` | {inputs} | {status} | {detail} |")
    count = sum(COVERAGE.get(name, refused("")).supported for name in found)
    header = ("<!-- generated by `python -m i2am.adapters.diffusers.coverage --write docs/pipeline_coverage.md`; "
              "do not edit -->")
    intro = (f"Generated from diffusers {diffusers.__version__}: the {len(found)} pipeline classes it exports whose "
             f"`__call__` takes an image-like input, {count} of them supported. *Relations* are what the maps "
             "attribute ([i2am.trace](pipelines.md), [diffusion-transformer editors](dit_editors.md)); a refused "
             "pipeline gives the reason. The table is `i2am.adapters.diffusers.coverage.COVERAGE`; a diffusers release "
             "that adds an image-conditioned pipeline fails `tests/unit/adapters/test_diffusers_coverage.py` until it "
             "is classified there and this page is regenerated.")
    lines = ["# Coverage of diffusers' image-conditioned pipelines", "", header, "", intro, "",
             "| pipeline | image inputs | status | relations / reason |", "|---|---|---|---|", *rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the Markdown page here (default: print it)")
    args = parser.parse_args(argv)
    page = render()
    if args.write is None:
        print(page, end="")
    else:
        args.write.write_text(page)


if __name__ == "__main__":
    main()
