"""Text conditioning of PASD: the SD-1.5 CLIP text encoder path (77 tokens), shared by the UNet and the ControlNet.

Full size reads ``text_encoder/`` and ``tokenizer/`` from a local SD-1.5 folder. The tiny preset builds a small
``CLIPTextModel`` from config and tokenizes with ``ByteTokenizer``, which needs no vocabulary file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

# PASD's defaults (test_pasd.py): appended to every prompt, and the negative prompt of the unconditional half.
ADDED_PROMPT = "clean, high-resolution, 8k"
NEGATIVE_PROMPT = "blurry, dotted, noise, raster lines, unclear, lowres, over-smoothed"


class ByteTokenizer:
    """UTF-8 bytes as token ids, framed by BOS/EOS and padded to ``model_max_length``; for tiny text encoders."""

    def __init__(self, bos_token_id: int, eos_token_id: int, pad_token_id: int, model_max_length: int = 77):
        if max(bos_token_id, eos_token_id, pad_token_id) < 256:
            raise ValueError("ByteTokenizer: special token ids must lie above the 256 byte ids")
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos_token_id, eos_token_id, pad_token_id
        self.model_max_length = model_max_length

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        ids = torch.full((len(prompts), self.model_max_length), self.pad_token_id, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            tokens = [self.bos_token_id, *prompt.encode("utf-8")[: self.model_max_length - 2], self.eos_token_id]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids


class PromptEncoder(nn.Module):
    """Prompts -> [B, 77, D] CLIP hidden states (``last_hidden_state``, as SD-1.5 pipelines use them)."""

    def __init__(self, text_encoder: CLIPTextModel, tokenizer):
        super().__init__()
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer

    @classmethod
    def from_config(cls, config: dict) -> PromptEncoder:
        text_config = CLIPTextConfig(**config)
        tokenizer = ByteTokenizer(text_config.bos_token_id, text_config.eos_token_id, text_config.pad_token_id,
                                  text_config.max_position_embeddings)
        return cls(CLIPTextModel(text_config), tokenizer)

    @classmethod
    def from_sd_folder(cls, root: str | Path) -> PromptEncoder:
        """``text_encoder/`` and ``tokenizer/`` of a local SD-1.5 diffusers folder; never contacts a hub."""
        root = Path(root)
        for sub in ("text_encoder", "tokenizer"):
            if not (root / sub).is_dir():
                raise FileNotFoundError(f"PASD base model: {root / sub} not found (expected an SD-1.5 diffusers "
                                        f"folder with text_encoder/ and tokenizer/)")
        return cls(CLIPTextModel.from_pretrained(root / "text_encoder", local_files_only=True),
                   CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True))

    def token_ids(self, prompts: list[str]) -> torch.Tensor:
        if isinstance(self.tokenizer, ByteTokenizer):
            return self.tokenizer(prompts)
        return self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    def forward(self, prompts: list[str]) -> torch.Tensor:
        ids = self.token_ids(list(prompts)).to(self.text_encoder.device)
        return self.text_encoder(ids)[0]


def full_prompt(prompt: str, added_prompt: str = ADDED_PROMPT) -> str:
    """PASD's positive prompt: the (captioned or user) prompt followed by the added quality words."""
    prompt = prompt.strip().rstrip(",")
    return f"{prompt}, {added_prompt}" if prompt else added_prompt
