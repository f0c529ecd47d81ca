"""Train the tiny ShapesWorld Stable Diffusion from scratch and save it as a ``StableDiffusionPipeline``.

Phase A trains the VAE (MSE + L1 + small KL) and measures ``scaling_factor`` = 1 / std of its latents.
Phase B pre-encodes the training latents once, then trains the U-Net and the text encoder jointly on the
standard epsilon objective (the paper's Eq. 1 denoising loss) weighted by min-SNR-5 (Hang et al. 2023), with
10% empty captions for classifier-free guidance and an EMA of the weights (the saved model is the EMA).
Checkpoints are atomic (safetensors + JSON, never pickle): a killed run resumes where it stopped. The run is
bounded by steps and by total wall-clock minutes (summed over resumes).

CLI: ``python -m dptune.shapesworld.train_base --out models/shapesworld-sd --max-minutes 40``.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from dptune.shapesworld.tiny_sd import TinySDConfig, count_params, make_pipeline
from dptune.shapesworld.tokenizer import save_vocab_files
from dptune.shapesworld.train_base_state import Run, open_checkpoint
from dptune.utils.config import add_dataclass_args, field, from_dict, merge_config, require_positive, to_dict
from dptune.utils.io import ArtefactError, load_tensors, save_json, save_tensors


@dataclass
class TrainBaseConfig:
    """Options of :func:`train_base` (architecture in ``model``)."""

    model: TinySDConfig = dataclasses.field(
        default_factory=TinySDConfig, metadata={"help": "architecture (TinySDConfig options as a mapping)"}
    )
    seed: int = field(0, help="seed of the world renders and of all training randomness")
    num_images: int = field(30000, help="training renders (rendered once, pre-encoded for the U-Net)")
    batch_size: int = field(64, help="batch size of both phases")
    vae_steps: int = field(600, help="VAE optimisation steps (phase A)")
    vae_lr: float = field(1e-3, help="VAE AdamW learning rate")
    kl_weight: float = field(1e-6, help="weight of the VAE KL term (keeps latents loosely near N(0, I))")
    unet_lr: float = field(1e-3, help="U-Net + text encoder AdamW learning rate after warm-up")
    freeze_text_encoder: bool = field(False, help="keep the text encoder at its random initialisation and train "
                                      "the U-Net only, as SD trains on a frozen CLIP text encoder (trained "
                                      "jointly, the encoder learned to ignore the relation words)")
    init_vae: str = field("", help="start from the VAE of this pipeline folder (e.g. models/shapesworld-sd); "
                          "with --vae-steps 0 phase A is skipped")
    init_text_encoder: str = field("", help="start from this text encoder: a folder written by `dptune "
                                   "shapesworld pretrain-text` or a pipeline folder (with "
                                   "--freeze-text-encoder: SD's frozen pretrained CLIP, in small)")
    warmup_steps: int = field(200, help="linear learning-rate warm-up steps of phase B")
    weight_decay: float = field(0.01, help="AdamW weight decay (both phases)")
    max_unet_steps: int = field(100000, help="stop phase B after this many steps")
    max_minutes: float = field(45.0, help="wall-clock budget of the whole run (all phases, all resumes)")
    empty_caption_prob: float = field(0.1, help="share of empty captions (trains the unconditional branch)")
    min_snr_gamma: float = field(5.0, help="min-SNR loss weighting gamma (0 disables the weighting)")
    ema_decay: float = field(0.999, help="EMA decay of U-Net and text-encoder weights (saved model = EMA)")
    checkpoint_minutes: float = field(3.0, help="write a resumable checkpoint every this many minutes")
    checkpoint_dir: str = field("", help="checkpoint folder; empty = '<out_dir>.checkpoints' beside out_dir")
    threads: int = field(2, help="torch CPU threads (use 1 when other jobs share the cores)")
    log_every: int = field(50, help="record the mean loss every this many steps")

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = from_dict(TinySDConfig, self.model)
        require_positive(
            self, ("num_images", "batch_size", "threads", "log_every", "max_minutes", "checkpoint_minutes")
        )
        for name in ("vae_steps", "max_unet_steps", "warmup_steps", "min_snr_gamma", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if not 0.0 <= self.empty_caption_prob < 1.0:
            raise ValueError(f"empty_caption_prob={self.empty_caption_prob} must be in [0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay} must be in [0, 1)")
        if self.batch_size > self.num_images:
            raise ValueError(f"batch_size={self.batch_size} exceeds num_images={self.num_images}; lower it")


# --------------------------------------------------------------------------------------------- data


def _render(world, cfg: TrainBaseConfig):
    """The training set from the world: uint8 images (N, S, S, 3) and their captions."""
    import numpy as np

    images, captions = world.sample_training_pairs(cfg.num_images, cfg.seed)
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


def _train_vae(run: Run, pixels, progress: bool) -> None:
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


def _encode_dataset(run: Run, pixels, captions: list[str], data_path: Path) -> None:
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


def _train_unet(run: Run, data: dict, progress: bool) -> None:
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


# ---------------------------------------------------------------------------------------------- main


def _save_pipeline(run: Run, out_dir: Path) -> dict:
    """Save the EMA weights as a StableDiffusionPipeline folder plus ``training_log.json``."""
    run.ema.copy_to(run.named_trainable())
    for m in ("vae", "unet", "text_encoder"):
        run.modules[m].eval()
    make_pipeline(run.modules).save_pretrained(str(out_dir), safe_serialization=True)
    save_vocab_files(run.vocabulary, out_dir / "tokenizer")  # lets the slow CLIPTokenizer load it too
    params = {m: count_params(run.modules[m]) for m in ("vae", "text_encoder", "unet")}
    log = {
        "vae_steps": run.state["vae_step"],
        "unet_steps": run.state["unet_step"],
        "wall_time_s": round(run.elapsed(), 1),
        "phase_seconds": run.state["phase_seconds"],
        "scaling_factor": run.state["scaling_factor"],
        "param_counts": dict(params, total=sum(params.values())),
        "losses": run.state["losses"],
        "notes": run.state["notes"],
        "config": to_dict(run.cfg),
    }
    save_json(out_dir / "training_log.json", log)
    return log


def _pretrained_vae(name_or_path: str):
    """The VAE of a saved pipeline (folder or 'shapesworld'); its architecture must match the config's."""
    from dptune.backbone.loading import ModelNotFoundError, load_pipeline

    try:
        return load_pipeline(name_or_path).vae
    except ModelNotFoundError as e:
        raise ModelNotFoundError(f"init_vae: {e}") from e


def _pretrained_text_encoder(folder: str) -> dict:
    """Weights of ``folder/text_encoder`` (pretrain-text output or a pipeline folder) for the config's encoder."""
    from safetensors.torch import load_file

    path = Path(folder) / "text_encoder" / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"init_text_encoder: {path} not found; pass a folder written by `dptune shapesworld pretrain-text` "
            "or a saved pipeline folder"
        )
    return load_file(str(path))


def train_base(cfg: TrainBaseConfig, out_dir, resume: bool = True, progress: bool = True, world=None) -> dict:
    """Train (or resume) the tiny SD and save it to ``out_dir``; returns the training log.

    ``world`` supplies ``vocabulary()`` and ``sample_training_pairs(n, seed)``; default ``dptune.shapesworld``.
    """
    import torch

    torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else out_dir.with_name(out_dir.name + ".checkpoints")
    if not resume and ckpt_dir.exists():
        for name in ("latest.json", "data.safetensors"):
            (ckpt_dir / name).unlink(missing_ok=True)
    found = open_checkpoint(ckpt_dir, cfg) if resume else None
    if world is None and (found is None or found[1]["state"]["phase"] == "vae"):
        import dptune.shapesworld as world
    if found is None:
        run = Run(cfg, ckpt_dir, list(world.vocabulary()))
        if cfg.init_vae:  # only on a fresh start: a checkpoint already holds the VAE
            run.modules["vae"].load_state_dict(_pretrained_vae(cfg.init_vae).state_dict())
        if cfg.init_text_encoder:
            try:
                run.modules["text_encoder"].load_state_dict(_pretrained_text_encoder(cfg.init_text_encoder))
            except RuntimeError as e:  # missing keys or size mismatch: another architecture or vocabulary
                raise ValueError(f"init_text_encoder: {cfg.init_text_encoder} does not fit model: {e}; "
                                 "pretrain it with the same model options") from e
        run.start_phase("vae")
    else:
        run = Run(cfg, ckpt_dir, found[1]["vocabulary"])
        run.restore(*found)
    data_path = ckpt_dir / "data.safetensors"
    try:
        if run.state["phase"] == "vae":
            images, captions = _render(world, cfg)
            pixels = to_pixels(images)  # (N, 3, S, S)
            run.lap("vae")
            _train_vae(run, pixels, progress)
            run.lap("encode")
            _encode_dataset(run, pixels, captions, data_path)
            del pixels, images
            run.start_phase("unet")
            run.checkpoint()
        data = load_tensors(data_path)
        run.lap("unet")
        _train_unet(run, data, progress)
    except KeyboardInterrupt:
        run.checkpoint()  # an interrupted run keeps its progress
        raise
    run.checkpoint()
    run.lap("save")
    return _save_pipeline(run, out_dir)


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``--out``, ``--config``, resume/progress switches, and one flag per TrainBaseConfig option."""
    p = parser or argparse.ArgumentParser(description="Train the tiny ShapesWorld Stable Diffusion from scratch.")
    p.add_argument("--out", required=True, help="output StableDiffusionPipeline folder")
    p.add_argument("--config", help="YAML/JSON file of TrainBaseConfig options (flags override it)")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints and start over")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_dataclass_args(p, TrainBaseConfig, skip=("model",))  # architecture options go through --config
    return p


def config_from_args(args: argparse.Namespace) -> TrainBaseConfig:
    return merge_config(TrainBaseConfig, args, file=args.config)


def _sigterm_to_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # ``kill PID`` then checkpoints like Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        cfg = config_from_args(args)
        log = train_base(cfg, args.out, resume=not args.no_resume, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, ArtefactError) as e:  # one line naming the problem and the fix
        print(f"train_base: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train_base: interrupted; checkpoint saved, run the same command again to resume", file=sys.stderr)
        return 130
    print(
        f"saved {args.out}: {log['vae_steps']} VAE + {log['unet_steps']} U-Net steps in "
        f"{log['wall_time_s'] / 60:.1f} min, {log['param_counts']['total']:,} parameters"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
