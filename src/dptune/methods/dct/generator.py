"""The ``dct`` generator: sampling with a trained class token, placed at the class words of each prompt."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dptune.utils.config import field

INSERTS = ("class", "all", "none")


@dataclass
class DCTConfig:
    """A trained token folder and where the token goes in each prompt."""

    tokens: str | None = field(None, help="token folder (learned_embeds.safetensors + dct.json) of `dptune train "
                               "dct`: <out>/best/tokens or final/tokens")
    insert: str = field("class", help="class: put the token at the trained class words of prompts that have them "
                        "(before them, or in their place if so trained; others unchanged); all: every prompt "
                        "(prepended if no class words); none: prompts must already hold the token")

    def __post_init__(self) -> None:
        if self.insert not in INSERTS:
            raise ValueError(f"insert must be one of {INSERTS}, got {self.insert!r}")


def with_token(prompt: str, token: str, words: str, insert: str, placement: str = "before") -> str:
    """``prompt`` with the token placed before the class words, or in their place (``placement="replace"``, how
    the token was trained; see :class:`DCTConfig`)."""
    if token in prompt.split():
        return prompt
    if insert == "none":
        raise ValueError(f"prompt {prompt!r} does not hold the class token {token!r}; write it in the prompt "
                         f"(e.g. '{token} {words}') or use dct:insert=class")
    pattern = re.compile(rf"(?<!\S){re.escape(words)}(?!\S)") if words else None
    if pattern is not None and pattern.search(prompt):
        return pattern.sub(token if placement == "replace" else f"{token} {words}", prompt, count=1)
    return f"{token} {prompt}" if insert == "all" else prompt


class DCTGenerator:
    """Samples with the token installed in the shared text encoder (restored after every call)."""

    probe = None

    def __init__(self, cfg: DCTConfig, ctx) -> None:
        from dptune.backbone import SDBackbone
        from dptune.backbone.pipelines import ddim_pipeline
        from dptune.methods.dct.token import add_token, load_token, text_embeddings_module
        from dptune.sampling import GuidedPipeline

        self.token, self.row, self.meta = load_token(cfg.tokens)
        bb = ctx.backbone(None)
        dim = text_embeddings_module(bb.text_encoder).weight.shape[1]
        if self.row.numel() != dim:
            raise ValueError(f"token {self.token!r} has {self.row.numel()} dims but the text encoder of "
                             f"{ctx.model!r} has {dim}: it was trained for model {self.meta.get('model')!r}")
        tokenizer, self.token_id, _ = add_token(bb.tokenizer, self.token)  # a copy: the shared one is untouched
        self.own = SDBackbone(bb.vae, bb.text_encoder, tokenizer, bb.unet, bb.scheduler)
        pipe = GuidedPipeline(ddim_pipeline(self.own))
        self.pipe = pipe.set_scheduler(ctx.scheduler) if ctx.scheduler != "ddim" else pipe
        self.ctx, self.insert = ctx, cfg.insert
        self.words = str(self.meta.get("class_words", ""))
        self.description = (f"class token {self.token} for {self.meta.get('label', '?')!r} of "
                            f"{self.meta.get('classifier', '?')} (DCT)")

    def prompts(self, prompts: list[str]) -> list[str]:
        placement = str(self.meta.get("placement", "before"))
        return [with_token(p, self.token, self.words, self.insert, placement) for p in prompts]

    def __call__(self, prompts: list[str], seeds: list[int]):
        from dptune.methods.dct.token import token_installed

        texts = self.prompts(prompts)
        with token_installed(self.own.text_encoder, self.token_id, self.row):
            return self.ctx.sample(self.pipe, texts, seeds)
