"""The DPT training objective as one ``nn.Module`` (so DDP/accelerate wrap a single forward).

One step, per sample (paper Sec. 3.1-3.2, Appendix B.1; the passes of the official code):

    ITM passes, all with the SAME noise and timestep (so scores differ only by image/text):
      0  positive image  x  positive caption
      1  positive image  x  hard-negative caption        -> I->T: CE over [0, 1, 2], target 0 (Eq. 4)
      2  positive image  x  random caption
      3  hard-neg image  x  positive caption             -> T->I: CE over [0, 3, 4], target 0 (Eq. 3)
      4  random image    x  positive caption
    REC pass:
      5  REC image       x  referring expression         -> grounding loss (Eqs. 5-7)

The U-Net is conditioned on the text being scored (as DiffusionITM / the official code). All six passes run
as ONE truncated U-Net call of 6B samples. With the MSE term (stage 2), pass 0 runs the full U-Net (to get
the noise prediction) and passes 1-5 the truncated one: two calls. With the denoising contrast (an extension,
:mod:`dptune.losses.denoising`) passes 0 and 1 run the full U-Net: the same noisy latent under the positive
and the hard-negative caption.
"""

from __future__ import annotations

import torch
from torch import nn

from dptune.adapter import DPTProbe, max_cosine_matrix
from dptune.backbone import SDBackbone
from dptune.losses import LossWeights, dpt_losses
from dptune.losses.denoising import denoising_contrast_loss, per_sample_error

IMAGE_KEYS = ("image", "hn_image", "rand_image", "ref_image")
TEXT_KEYS = ("caption", "hn_caption", "rand_caption", "ref_expression")


@torch.no_grad()
def prepare_inputs(backbone: SDBackbone, batch: dict, generator: torch.Generator, t_range: tuple[int, int],
                   rec_t_range: tuple[int, int] | None = None, encode_text: bool = True) -> dict:
    """Frozen parts of a step (VAE, text encoder, noise, timesteps) -> tensors for :class:`DPTObjective`.

    Timesteps are uniform in ``t_range``; the REC pass draws its own from ``rec_t_range`` when given (a
    low-noise window: a box can only be regressed where the object is visible), else it shares the ITM one.
    With ``encode_text=False`` (a text encoder that trains) only the prompts are passed on and
    :class:`DPTObjective` encodes them inside the graph.

    ``batch`` is a collated :class:`~dptune.data.DPTSample` batch. Image fields holding 3-channel pixels are
    VAE-encoded; fields that already hold latents (a latent cache, ``unet.in_channels`` channels) are used
    as they are.
    """
    device = backbone.device
    bsz = len(batch["caption"])
    latents = []
    for key in IMAGE_KEYS:  # 4 x (B, 4, h, w)
        x = batch[key]
        is_latent = x.shape[1] == backbone.unet.config.in_channels and x.shape[1] != 3
        latents.append(x.to(device) if is_latent else backbone.encode_images(x))
    texts = [p for key in TEXT_KEYS for p in batch[key]]  # 4B prompts
    noise = torch.randn(latents[0].shape, generator=generator).to(device)  # shared by all passes
    t = torch.randint(t_range[0], t_range[1], (bsz,), generator=generator).to(device)
    t_rec = t if rec_t_range is None else torch.randint(*rec_t_range, (bsz,), generator=generator).to(device)
    inputs = {
        "latents": torch.stack(latents).float(),  # (4, B, 4, h, w)
        "texts": texts,
        "noise": noise.float(),
        "t": t,
        "t_rec": t_rec,
        "ref_box": batch["ref_box"].to(device).float(),  # (B, 4)
    }
    return with_text(backbone, inputs) if encode_text else inputs


def with_text(backbone: SDBackbone, inputs: dict) -> dict:
    """``inputs`` plus the text embeddings of its 4B prompts (a no-op when they are there already)."""
    if "text_hidden" in inputs:
        return inputs
    bsz = len(inputs["texts"]) // len(TEXT_KEYS)
    emb = backbone.encode_text(inputs["texts"])  # hidden (4B, L, D), pooled (4B, Dp)
    return {**inputs, "text_hidden": emb.hidden.view(4, bsz, *emb.hidden.shape[1:]),  # (4, B, L, D)
            "text_pooled": emb.pooled.view(4, bsz, -1).float()}  # (4, B, Dp)


class DPTObjective(nn.Module):
    """ITM + REC (+ MSE, + denoising contrast) losses of one batch.

    ``forward(inputs) -> (total, {name: detached scalar})``.
    """

    def __init__(self, probe: DPTProbe, weights: LossWeights | None = None, itm_weight: float = 1.0,
                 rec_weight: float = 1.0, mse_weight: float = 0.0, train_text_encoder: bool = False,
                 contrast_weight: float = 0.0, contrast_tau: float = 0.05):
        super().__init__()
        self.probe = probe
        # a training text encoder is a submodule (optimiser, checkpoints, DDP see its LoRA); a frozen one is not
        self.text_encoder = probe.backbone.text_encoder if train_text_encoder else None
        self.weights = weights or LossWeights()
        self.itm_weight, self.rec_weight, self.mse_weight = itm_weight, rec_weight, mse_weight
        self.contrast_weight, self.contrast_tau = contrast_weight, contrast_tau

    def _full_passes(self) -> int:
        """How many of the six passes (per sample) need the noise prediction: 0, 1 (MSE) or 2 (+ contrast)."""
        return 2 if self.contrast_weight > 0 else int(self.mse_weight > 0)

    def _passes(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        lat, hid, t = inputs["latents"], inputs["text_hidden"], inputs["t"]
        # (image index, text index) of the six passes, see the module docstring
        pairs = [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (3, 3)]
        z0 = torch.cat([lat[i] for i, _ in pairs])  # (6B, 4, h, w)
        text = torch.cat([hid[j] for _, j in pairs])  # (6B, L, D)
        bb = self.probe.backbone
        noise = inputs["noise"].repeat(len(pairs), 1, 1, 1)
        tt = torch.cat([t.repeat(len(pairs) - 1), inputs["t_rec"]])  # (6B,): the REC pass may have its own
        z_t = bb.add_noise(z0, noise, tt).to(bb.dtype)
        return z_t, tt, text.to(bb.dtype), z0

    def outputs(self, inputs: dict):
        """Adapter output of all 6B passes, the (B, 3) I->T and T->I score tables, and the denoising terms
        ({} without them; "mse" and/or "contrast" otherwise)."""
        inputs = with_text(self.probe.backbone, inputs)
        z_t, tt, text, z0 = self._passes(inputs)
        bsz = inputs["t"].shape[0]
        denoise, n_full = {}, self._full_passes() * bsz
        if n_full:  # passes 0 (and 1: same latent, hard-negative caption) through the whole U-Net
            out0, eps = self.probe.forward_with_noise(z_t[:n_full], tt[:n_full], text[:n_full])
            out = _concat_outputs(out0, self.probe(z_t[n_full:], tt[n_full:], text[n_full:]))
            target = self.probe.backbone.denoise_target(z0[:bsz], inputs["noise"], inputs["t"])  # (B, 4, h, w)
            err = per_sample_error(eps, target.repeat(n_full // bsz, 1, 1, 1))  # (n_full,)
            denoise["mse"] = err[:bsz].mean()  # = F.mse_loss over the positive pass
            if n_full == 2 * bsz:
                denoise["contrast"] = denoising_contrast_loss(err[:bsz], err[bsz:], self.contrast_tau)
        else:
            out = self.probe(z_t, tt, text)
        pooled = inputs["text_pooled"]
        text_of_pass = torch.cat([pooled[j] for j in (0, 1, 2, 0, 0)])  # (5B, Dp)
        s = self.probe.adapter.match_score(out.match_emb[: 5 * bsz].float(), text_of_pass).view(5, bsz)
        i2t = torch.stack([s[0], s[1], s[2]], dim=1)  # (B, 3): image vs [pos, hn, rand] captions
        t2i = torch.stack([s[0], s[3], s[4]], dim=1)  # (B, 3): caption vs [pos, hn, rand] images
        return out, i2t, t2i, denoise

    def forward(self, inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs = with_text(self.probe.backbone, inputs)  # encoded here, in the graph, if the text encoder trains
        out, i2t, t2i, denoise = self.outputs(inputs)
        bsz = i2t.shape[0]
        in_batch = None
        if self.weights.in_batch > 0 and bsz > 1:  # LossWeights.in_batch: CLIP-style in-batch negatives
            # positive-pass images vs every positive caption (approximate: pass i's features saw caption i)
            in_batch = max_cosine_matrix(out.match_emb[:bsz].float(), inputs["text_pooled"][0])  # (B, B)
        total, terms = dpt_losses(
            logit_scale=out.logit_scale, i2t_scores=i2t, t2i_scores=t2i, in_batch_scores=in_batch,
            rec=out.select(slice(5 * bsz, 6 * bsz)), gold_boxes=inputs["ref_box"],
            ref_text_emb=inputs["text_pooled"][3], weights=_scaled(self.weights, self.itm_weight, self.rec_weight),
        )
        for name, weight in (("mse", self.mse_weight), ("contrast", self.contrast_weight)):
            if name in denoise:
                total = total + weight * denoise[name]
                terms[name] = denoise[name].detach()
        terms["total"] = total.detach()
        return total, terms


def _concat_outputs(a, b):
    from dptune.adapter import AdapterOutput

    fields = {k: torch.cat([getattr(a, k), getattr(b, k)]) for k in vars(a) if k != "logit_scale"}
    return AdapterOutput(**fields, logit_scale=a.logit_scale)


def _scaled(w: LossWeights, itm: float, rec: float) -> LossWeights:
    """Scale the matching / grounding weights as a whole (ablations: GM-only, LG-only)."""
    from dataclasses import replace

    return replace(w, t2i=w.t2i * itm, i2t=w.i2t * itm, in_batch=w.in_batch * itm, prob=w.prob * rec,
                   l1=w.l1 * rec, giou=w.giou * rec, t2o=w.t2o * rec)
