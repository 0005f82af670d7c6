"""Word labels of a text relation's tokens, from the pipeline's own tokenizer, for word-map titles and token bars."""
from __future__ import annotations

# The tokenizer whose tokens a pipeline's text relation attends to: FLUX pipelines attend to the T5 tokens of
# tokenizer_2 (their CLIP tokens only feed the pooled embedding); SD3 concatenates 77 CLIP tokens and then T5's.
TEXT_TOKENIZERS = {"Flux": ("tokenizer_2",), "StableDiffusion3": ("tokenizer", "tokenizer_3")}


def tokens(tokenizer, prompt: str, count: int) -> list[str]:
    """The ``count`` tokens ``tokenizer`` makes of ``prompt`` as the pipelines do (padded to ``count`` with the pad
    token, truncated), as strings."""
    ids = tokenizer(prompt, padding="max_length", max_length=count, truncation=True).input_ids
    return [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]


def word_labels(pipe, prompt: str, count: int) -> list[str]:
    """One label per text token of ``pipe``'s text relation (``count`` = the relation's token count, e.g. the second
    axis of ``maps.daam_word_maps(layer)``), read with the pipeline's tokenizer(s); UNet and DiT pipelines alike."""
    name = type(pipe).__name__
    attributes = next((v for prefix, v in TEXT_TOKENIZERS.items() if name.startswith(prefix)), ("tokenizer",))
    tokenizers = [getattr(pipe, a, None) for a in attributes]
    if any(t is None for t in tokenizers):
        raise ValueError(f"{name} has no {' / '.join(attributes)}: pass words=[...] to the plot yourself")
    if len(tokenizers) == 1:
        return tokens(tokenizers[0], prompt, count)
    first = min(tokenizers[0].model_max_length, count)
    return tokens(tokenizers[0], prompt, first) + tokens(tokenizers[1], prompt, count - first)
