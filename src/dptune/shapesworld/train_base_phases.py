"""The two training phases of ``dptune shapesworld train-base``: the VAE (phase A), the pre-encoding of the
training renders, and the U-Net + text encoder (phase B); plus the tensors they read."""

from __future__ import annotations

from pathlib import Path

from dptune.shapesworld.train_base_config import TrainBaseConfig
from dptune.shapesworld.train_base_state import Run
from dptune.utils.io import save_tensors


def render_training_set(world, cfg: TrainBaseConfig):
    """The training set from the world: uint8 images (N, S, S, 3) and their captions."""
    import numpy as np

    # paraphrased captions only when asked, so a world without wordings keeps the two-argument hook
    extra = {"wordings": True} if cfg.paraphrases else {}
    images, captions = world.sample_training_pairs(cfg.num_images, cfg.seed, **extra)
    s = cfg.model.image_size
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape != (cfg.num_images, s, s, 3):
        raise ValueError(
            f"world.sample_training_pairs gave {getattr(images, 'shape', type(images))}; expected uint8 "
            f"({cfg.num_images}, {s}, {s}, 3): model.image_size must equal the world's IMAGE_SIZE"
        )
    return images, list(captions)


def to_pixels(images_u8):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], the VAE's input range."""
    import torch

    return torch.from_numpy(images_u8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tokenize_captions(tokenizer, captions: list[str], max_length: int):
    """Token ids (N, L) padded to ``max_length``; refuse captions the model would silently mangle."""
    enc = tokenizer(captions, padding="max_length", max_length=max_length, return_tensors="pt")
    ids = enc.input_ids  # (N, L)
    if ids.shape[1] != max_length:
        raise ValueError(f"a caption needs {ids.shape[1]} tokens > max_length={max_length}; raise model.max_length")
    # Unknown words become <|endoftext|>, so a clean caption has exactly one EOS among its real tokens.
    n_eos = (ids.eq(tokenizer.eos_token_id) & enc.attention_mask.bool()).sum(dim=1)  # (N,)
    if bool((n_eos != 1).any()):
        bad = captions[int((n_eos != 1).nonzero()[0])]
        raise ValueError(f"caption {bad!r} has words outside world.vocabulary(); add them to the vocabulary")
    return ids


# ------------------------------------------------------------------------------------------- phase A


def train_vae(run: Run, pixels, progress: bool) -> None:
    """Phase A: MSE + L1 reconstruction + ``kl_weight`` * KL(q(z|x) || N(0, I))."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    cfg, vae = run.cfg, run.modules["vae"]
    vae.train()
    bar = tqdm(total=cfg.vae_steps, initial=run.state["vae_step"], desc="VAE", disable=not progress)
    while run.state["vae_step"] < cfg.vae_steps:
        x = pixels[torch.randint(len(pixels), (cfg.batch_size,), generator=run.generator)]  # (B, 3, S, S)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=run.generator)).sample  # (B, 3, S, S)
        loss = F.mse_loss(rec, x) + F.l1_loss(rec, x) + cfg.kl_weight * post.kl().mean()
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.state["vae_step"] += 1
        run.record("vae", loss.item(), cfg.log_every)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        run.maybe_checkpoint(cfg.checkpoint_minutes)
    bar.close()


def encode_dataset(run: Run, pixels, captions: list[str], data_path: Path) -> None:
    """Pre-encode every render once; set ``scaling_factor`` = 1 / std of sampled latents (measured)."""
    import torch

    vae = run.modules["vae"].eval()
    means, stds = [], []
    with torch.no_grad():
        for chunk in pixels.split(500):
            dist = vae.encode(chunk).latent_dist
            means.append(dist.mean)  # (b, 4, s, s)
            stds.append(dist.std)
    mean, std = torch.cat(means), torch.cat(stds)  # (N, 4, s, s)
    sample = mean + std * torch.randn(mean.shape, generator=run.generator)
    scale = 1.0 / float(sample.std())
    vae.register_to_config(scaling_factor=scale)
    held_out = pixels[:256]
    with torch.no_grad():
        rec_mse = float((vae.decode(mean[:256]).sample - held_out).pow(2).mean())
    run.state["scaling_factor"] = scale
    run.state["notes"].update(
        latent_mean=float(sample.mean()), latent_std=float(sample.std()), vae_train_recon_mse_pm1=rec_mse
    )
    ids = tokenize_captions(run.modules["tokenizer"], captions, run.cfg.model.max_length)
    save_tensors(data_path, {"latent_mean": mean, "latent_std": std, "input_ids": ids})


# ------------------------------------------------------------------------------------------- phase B


def _unet_loss(run: Run, data: dict, empty_ids):
    """Min-SNR-weighted epsilon loss: E_t [ min(SNR_t, gamma) / SNR_t * ||eps - eps_theta(z_t, t, c)||^2 ]."""
    import torch

    cfg, gen = run.cfg, run.generator
    unet, text_encoder, sched = run.modules["unet"], run.modules["text_encoder"], run.modules["scheduler"]
    idx = torch.randint(len(data["input_ids"]), (cfg.batch_size,), generator=gen)
    mean, std = data["latent_mean"][idx], data["latent_std"][idx]  # (B, 4, s, s)
    z0 = (mean + std * torch.randn(mean.shape, generator=gen)) * run.state["scaling_factor"]
    ids = data["input_ids"][idx].clone()  # (B, L)
    drop = torch.rand(cfg.batch_size, generator=gen) < cfg.empty_caption_prob
    ids[drop] = empty_ids  # the unconditional branch that classifier-free guidance needs
    with torch.set_grad_enabled(not cfg.freeze_text_encoder):
        hidden = text_encoder(ids)[0]  # (B, L, D): last_hidden_state, as the SD pipeline uses
    noise = torch.randn(z0.shape, generator=gen)
    t = torch.randint(0, sched.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
    pred = unet(sched.add_noise(z0, noise, t), t, hidden).sample  # (B, 4, s, s)
    per_sample = (pred - noise).pow(2).mean(dim=(1, 2, 3))  # (B,)
    if cfg.min_snr_gamma > 0:
        abar = sched.alphas_cumprod[t]
        snr = abar / (1 - abar)
        per_sample = per_sample * snr.clamp(max=cfg.min_snr_gamma) / snr
    return per_sample.mean()


def train_unet(run: Run, data: dict, progress: bool) -> None:
    import torch
    from tqdm.auto import tqdm

    cfg = run.cfg
    run.modules["unet"].train()
    run.modules["text_encoder"].train(not cfg.freeze_text_encoder)
    empty_ids = tokenize_captions(run.modules["tokenizer"], [""], cfg.model.max_length)[0]  # (L,)
    named = run.named_trainable()
    budget = 60.0 * cfg.max_minutes
    bar = tqdm(total=cfg.max_unet_steps, initial=run.state["unet_step"], desc="U-Net", disable=not progress)
    while run.state["unet_step"] < cfg.max_unet_steps and run.elapsed() < budget:
        step = run.state["unet_step"]
        for group in run.optimizer.param_groups:  # linear warm-up, then constant
            group["lr"] = cfg.unet_lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        loss = _unet_loss(run, data, empty_ids)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(named.values()), 1.0)  # guards the high-lr early steps
        run.optimizer.step()
        run.ema.update(named, step)
        run.state["unet_step"] = step + 1
        run.record("unet", loss.item(), cfg.log_every)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", min_left=f"{(budget - run.elapsed()) / 60:.1f}")
        run.maybe_checkpoint(cfg.checkpoint_minutes)
    bar.close()
