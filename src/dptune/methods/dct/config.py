"""DCT's training options (paper defaults) and its class prompts ("A photo of <tok> {class}").

Paper / official code (idansc/discriminative_class_tokens): AdamW lr 1.25e-3 (= 2.5e-4 x epoch size 5),
weight decay 1e-2, gradient clipping 1, batch 1 with 5 accumulated micro-batches (one optimiser step = one
epoch of 5 images), at most 50 epochs, stop after 15 epochs without improvement or when the epoch's classifier
accuracy exceeds 0.7; gradient through the last sampling step only.
"""

from __future__ import annotations

from dataclasses import dataclass

from dptune.training.settings import TrainerSettings
from dptune.utils.config import field

SHAPESWORLD_TEMPLATE = "{token} {class}"  # the tiny model's word-level vocabulary has no "photo"
PAPER_TEMPLATE = "a photo of {token} {class}"
PLACEMENTS = ("before", "replace")


@dataclass
class DCTTrainConfig(TrainerSettings):
    out_dir: str = field("runs/dct", help="run folder; the token is written to <out>/final/tokens (and best/)")
    model: str = field("shapesworld", help="Stable Diffusion: diffusers folder, hub id, 'shapesworld', 'tiny-random'")
    classifier: str | None = field(None, help="shapesworld-count, efficientnet-lite0, or a transformers "
                                   "image-classifier folder / hub id")
    target: str = field("", help="target class: a label of the classifier (e.g. 3, espresso) or its index")
    class_text: str | None = field(None, help="the class words in the prompt (default: the target label)")
    template: str | None = field(None, help="prompt with {token} and {class} (default: 'a photo of {token} "
                                 "{class}'; ShapesWorld: '{token} {class}')")
    placement: str | None = field(None, help="before: the token goes before the class words (paper: 'a photo of "
                                  "<tok> espresso'); replace: it stands in for them ('<tok> red circles'). Default: "
                                  "replace for shapesworld-count (see docs/dct.md), else before")
    token: str = field("<dct>", help="the new word (must not exist in the tokenizer)")
    initializer: str | None = field(None, help="existing one-token word whose embedding starts the token "
                                    "(default 'a' as the paper; ShapesWorld counts: the count word, since 'a' "
                                    "means one object there)")
    sample_steps: int | None = field(None, help="sampling steps per training image (default: the model's)")
    guidance: float | None = field(None, help="classifier-free guidance (default: the model's; paper 7)")
    size: int | None = field(None, help="training image size (default: the model's native size)")
    grad_steps: int = field(1, help="differentiate through the last k sampling steps (earlier ones detached)")
    decode: str = field("x0", help="'x0': decode the last step's x0 prediction (always has a gradient); "
                        "'sample': its output latent")
    patience: int = field(15, help="stop after this many epochs (steps) without a better accuracy")
    stop_accuracy: float = field(0.7, help="stop once an epoch's classifier accuracy exceeds this")
    device: str = field("cpu", help="torch device")
    # paper defaults for the shared trainer's fields
    steps: int = field(50, help="epochs = optimiser steps (paper: 50)")
    batch_size: int = field(1, help="images per micro-batch (paper: 1)")
    grad_accum: int = field(5, help="micro-batches per step; an epoch = batch_size x grad_accum images (paper: 5)")
    lr: float = field(1.25e-3, help="AdamW learning rate (paper: 1.25e-3)")
    weight_decay: float = field(1e-2, help="AdamW weight decay on the token row (paper: 1e-2)")
    grad_clip: float = field(1.0, help="max gradient norm (paper: 1)")
    validate_every: int = field(1, help="steps between accuracy checks (1: every epoch, as the paper)")
    checkpoint_every: int = field(10, help="steps between checkpoints")
    log_every: int = field(1, help="steps between metrics.jsonl entries")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.classifier:
            raise ValueError("DCTTrainConfig: name a classifier with --classifier (shapesworld-count, "
                             "efficientnet-lite0, or a transformers image-classifier folder / hub id)")
        if not str(self.target).strip():
            raise ValueError("DCTTrainConfig: name the target class with --target (a label or an index)")
        if self.template is not None:
            check_template(self.template)
        if self.placement not in (None, *PLACEMENTS):
            raise ValueError(f"DCTTrainConfig: placement must be one of {PLACEMENTS}, got {self.placement!r}")
        checks = [(self.grad_steps >= 1, "grad_steps must be >= 1"),
                  (self.size is None or self.size >= 8, "size must be at least 8 pixels"),
                  (self.decode in ("x0", "sample"), "decode must be 'x0' or 'sample'"),
                  (self.patience >= 1, "patience must be >= 1"),
                  (0 < self.stop_accuracy <= 1.0, "stop_accuracy must be in (0, 1]")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"DCTTrainConfig: {message}")


def check_template(template: str) -> None:
    if "{token}" not in template:
        raise ValueError(f"prompt template {template!r} has no {{token}}: the class token must appear in the "
                         "prompt, e.g. 'a photo of {token} {class}'")


def default_placement(classifier: str) -> str:
    """ShapesWorld's closed grammar has no free slot: any word put before a caption breaks the tiny model (docs/dct.md),
    so its count token replaces the count word; elsewhere the paper's "<tok> {class}"."""
    return "replace" if classifier == "shapesworld-count" else "before"


def class_prompts(classifier: str, model: str, label: str, token: str, template: str | None,
                  class_text: str | None, placement: str = "before") -> tuple[list[str], str]:
    """(training prompts, each holding ``token``; the class words the generator places the token at).

    ``shapesworld-count``: the template over every training composition's caption with that count
    ("{token} three red circles", ...; class words "three"); otherwise one prompt whose class words are
    ``class_text`` or the label's first synonym (ImageNet labels list several: "tabby, tabby cat").
    ``placement="replace"`` drops the class words after the token ("<dct> red circles")."""
    if classifier == "shapesworld-count" and class_text is None:
        from dptune.methods.dct.worlds import count_captions, count_word

        captions, words = count_captions(int(label), split="train"), count_word(int(label))
        template = template or SHAPESWORLD_TEMPLATE
    else:
        words = class_text or label.split(",")[0].strip()
        captions = [words]
        template = template or (SHAPESWORLD_TEMPLATE if model in ("shapesworld", "tiny-random") else PAPER_TEMPLATE)
    check_template(template)
    prompts = [template.replace("{token}", token).replace("{class}", c) for c in captions]
    if placement == "replace":
        prompts = [p.replace(f"{token} {words}", token, 1) for p in prompts]
    return prompts, words
