"""Referees: discriminative image-text models behind one interface, alone or as a weighted ensemble.

``score(images (B, 3, H, W) in [0, 1], texts: list[str] of length B) -> logits (B,)`` (higher = match),
differentiable with respect to the images. ``loss(images, texts) -> (B,)`` is what the inversion minimises:
``-log sigmoid(logit)`` = -log p(match) for referees whose logit is a log-odds of match (``log_odds``: BLIP-2's
ITM head, the ShapesWorld referee), else ``-logit`` (CLIP's scaled cosine and the DPT adapter's matching
score have no calibrated "no match" side).

Specs (the method's ``referee`` option): ``SOURCE`` or ``KIND:SOURCE`` with KIND one of ``clip``, ``blip2``,
``dpt``, ``shapesworld``; a SOURCE is a folder, a hub id, ``shapesworld-referee`` (the shipped one) or, for
``dpt``, an adapter folder (``random`` = untrained, smoke tests). The kind of a folder is read from it.
Ensembles join members with ``+`` and weight them with ``*W``: ``shapesworld-referee*2+clip:DIR*1``.

Ensemble rule: weights are normalised to sum to 1; ``score = sum_r w_r score_r`` and
``loss = sum_r w_r loss_r`` (each member keeps its own loss form), so an ensemble of one is that referee.
"""

from __future__ import annotations

from pathlib import Path

from dptune.methods.referee.interface import Ensemble, Referee, check_pair

__all__ = ["KINDS", "Ensemble", "Referee", "check_pair", "detect_kind", "load_referee", "parse_spec"]

KINDS = ("clip", "blip2", "dpt", "shapesworld")


def parse_spec(spec: str) -> list[tuple[str | None, str, float]]:
    """``'a*2+clip:B'`` -> [(None, 'a', 2.0), ('clip', 'B', 1.0)]."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split("+"))):
        source, _, weight = part.rpartition("*") if "*" in part else (part, "", "1")
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(f"referee {part!r}: weight after '*' must be a number, got {weight!r}") from None
        kind, sep, rest = source.partition(":")
        if sep and kind in KINDS:
            out.append((kind, rest, w))
        else:
            out.append((None, source, w))
    if not out:
        raise ValueError(f"empty referee spec {spec!r}; e.g. 'shapesworld-referee' or 'clip:DIR'")
    return out


def detect_kind(source: str) -> str:
    """The kind of a referee folder (or the shipped alias); a clear error for anything else."""
    from dptune.methods.referee.shapes_model import ALIAS, is_referee_folder
    from dptune.utils.io import load_json

    if source == ALIAS:
        return "shapesworld"
    if source == "random":
        return "dpt"
    path = Path(source).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"referee {source!r} is not a folder; pass a CLIP / BLIP-2 / ShapesWorld-referee / DPT adapter folder, "
            f"'{ALIAS}', or a hub id with its kind ('clip:openai/clip-vit-base-patch32', 'blip2:ID')")
    if (path / "adapter_config.json").is_file():
        return "dpt"
    if is_referee_folder(path):
        return "shapesworld"
    model_type = load_json(path / "config.json").get("model_type") if (path / "config.json").is_file() else None
    kind = {"clip": "clip", "blip-2": "blip2"}.get(str(model_type))
    if kind is None:
        found = f"config.json model_type {model_type!r}" if model_type else "no config.json with a model_type"
        raise ValueError(
            f"referee folder {path} is not a supported model ({found}); supported: "
            "a transformers CLIP (model_type 'clip') or BLIP-2 (model_type 'blip-2') folder, a dptune ShapesWorld "
            "referee, or a DPT adapter folder (adapter_config.json)")
    return kind


def load_referee(spec: str, device: str = "cpu", backbone_fn=None, t: int = 100) -> Referee:
    """A referee (or ensemble) from its spec. ``backbone_fn()`` gives the SD a DPT adapter reads (the
    method's backbone), only called when a ``dpt`` member is present; ``t`` = the DPT referee's timestep."""
    members, weights = [], []
    for kind, source, weight in parse_spec(spec):
        kind = kind or detect_kind(source)
        members.append(_load_one(kind, source, device, backbone_fn, t))
        weights.append(weight)
    return members[0] if len(members) == 1 and weights[0] > 0 else Ensemble(members, weights)


def _load_one(kind: str, source: str, device: str, backbone_fn, t: int) -> Referee:
    if kind == "shapesworld":
        from dptune.methods.referee.shapes_referee import ShapesWorldReferee

        return ShapesWorldReferee.load(source, device)
    if kind == "clip":
        from dptune.methods.referee.hf_referees import CLIPReferee

        return CLIPReferee.load(source, device)
    if kind == "blip2":
        from dptune.methods.referee.hf_referees import Blip2Referee

        return Blip2Referee.load(source, device)
    if backbone_fn is None:
        raise ValueError(f"referee dpt:{source} needs the Stable Diffusion model its adapter probes")
    from dptune.methods.referee.dpt_referee import DPTReferee

    return DPTReferee.load(source, backbone_fn(), t=t)
