"""The toy-world check of the joint-attention capture: do the G2R SRAMs of a Kontext-style transformer trained with the
correspondence control loss localise on held-out toy pairs, as the UNet control's do (docs/dit_editors.md)?

The model generates each held-out person (Euler, ``num_steps`` steps from noise) under a ``JointAttentionCapture`` of
its supervised block with SRAM; every generated cell's SRAM (``i2am`` and ``share`` normalisations) is scored by the
toy world's ``LocalizationEvaluator`` against its true garment cell, next to the chance (random maps), centre-prior
and bounding-box baselines, with the attention entropy. ``i2am evaluate_toy_kontext`` (conf/evaluate_toy_kontext.yaml)
runs it.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from i2am.adapters.toy_kontext import LOSS_BLOCK, TOKEN_GRID, ToyKontextPairs, build_toy_kontext, sample
from i2am.engine.config import CaptureConfig
from i2am.engine.joint import JointAttentionCapture
from i2am.evaluation.localization_evaluator import BASELINES, LocalizationEvaluator
from i2am.measures.localization import grid_cells
from i2am.training.toy_kontext_train import model_state

RELATIONS = {"i2am": "image:reference", "share": "share:image:reference"}


def capture_srams(model, pairs: ToyKontextPairs, num_steps: int = 8, seed: int = 0, block: str = LOSS_BLOCK,
                  normalisations=("i2am", "share")) -> dict[str, torch.Tensor]:
    """normalisation -> [N, Lg, hr, wr] SRAM of every generated cell of ``block`` (summed over the sampling steps)."""
    cfg = CaptureConfig(num_steps=num_steps, time_groups=1, directions=("g2r",), layers=[block], sram_layers=[block])
    capture = JointAttentionCapture(model, cfg, normalisations=normalisations, relations=["image:reference"])
    with capture:
        sample(model, pairs, num_steps, torch.Generator().manual_seed(seed))
    maps = capture.maps()
    cells = grid_cells(*TOKEN_GRID)
    return {n: maps.sram(f"{RELATIONS[n]}/{block}", points=cells) for n in normalisations}


def localization_check(model, pairs: ToyKontextPairs, num_steps: int = 8, seed: int = 0,
                       normalisations=("i2am", "share")) -> dict[str, dict[str, float]]:
    """normalisation -> the localisation evaluator's figures (``loc_err``, ``loc_err_bbox_baseline``,
    ``attn_entropy``, ..., ``loc_localizes``) over every generated cell of ``pairs`` that has a true source."""
    srams = capture_srams(model.eval(), pairs, num_steps, seed, normalisations=normalisations)
    cells = grid_cells(*TOKEN_GRID)
    out = {}
    for name, sram in srams.items():
        evaluator = LocalizationEvaluator()
        evaluator.update(sram, cells, TOKEN_GRID, pairs.correspondence, pairs.inpaint_mask, pairs.reference_mask)
        out[name] = evaluator.compute()
    return out


def load_toy_kontext(path: str | Path) -> torch.nn.Module:
    """The toy Kontext model with the (float16 or float32) weights of a safetensors file, or of a training run's
    Lightning checkpoint (``.ckpt``), as float32."""
    model = build_toy_kontext()
    path = Path(path)
    stored = model_state(torch.load(path, weights_only=False)) if path.suffix == ".ckpt" else load_file(str(path))
    state = {k: v.float() for k, v in stored.items()}
    model.load_state_dict(state)
    return model.eval()


def check_figures(model, untrained, pairs: ToyKontextPairs, num_steps: int = 8, seed: int = 0) -> dict:
    """The check's summary: per model ("trained", "untrained") and normalisation, the argmax and centroid errors, the
    pointing game, the entropies and the verdict, with the baselines (the same for every row)."""
    keys = ("loc_err", "loc_err_centroid", "loc_pointing", "attn_entropy", "attn_max_prob", "loc_localizes")
    out = {"pairs": len(pairs), "num_steps": num_steps, "block": LOSS_BLOCK}
    for label, net in (("trained", model), ("untrained", untrained)):
        for norm, figures in localization_check(net, pairs, num_steps, seed).items():
            out[f"{label}/{norm}"] = {k: figures[k] for k in keys}
    out["baselines"] = {k: figures[k] for k in figures if k.endswith(BASELINES) and not k.startswith("loc_gain")}
    out["loc_n_queries"] = figures["loc_n_queries"]
    return out
