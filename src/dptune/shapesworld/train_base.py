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
import signal
import sys
import threading
from pathlib import Path

from dptune.backbone.tokenizers import save_vocab_files
from dptune.shapesworld.tiny_sd import count_params, make_pipeline
from dptune.shapesworld.train_base_config import TrainBaseConfig
from dptune.shapesworld.train_base_phases import (
    encode_dataset,
    render_training_set,
    to_pixels,
    tokenize_captions,
    train_unet,
    train_vae,
)
from dptune.shapesworld.train_base_state import Run, open_checkpoint
from dptune.utils.config import add_dataclass_args, merge_config, to_dict
from dptune.utils.io import ArtefactError, load_tensors, save_json


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

    ``world`` supplies ``vocabulary()`` and ``sample_training_pairs(n, seed)`` (called with ``wordings=True``
    under ``paraphrases``); default ``dptune.shapesworld``.
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
            images, captions = render_training_set(world, cfg)
            pixels = to_pixels(images)  # (N, 3, S, S)
            run.lap("vae")
            train_vae(run, pixels, progress)
            run.lap("encode")
            encode_dataset(run, pixels, captions, data_path)
            del pixels, images
            run.start_phase("unet")
            run.checkpoint()
        data = load_tensors(data_path)
        run.lap("unet")
        train_unet(run, data, progress)
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
    p.add_argument("--no-resume", action="store_true",
                   help="ignore existing checkpoints and start over (needed when the world's captions changed: "
                   "a resumed U-Net phase trains on the captions cached in its checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_dataclass_args(p, TrainBaseConfig, skip=("model",))  # architecture options go through --config
    return p


def config_from_args(args: argparse.Namespace) -> TrainBaseConfig:
    return merge_config(TrainBaseConfig, args, file=args.config)


def _sigterm_to_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # ``kill PID`` then checkpoints like Ctrl-C does


def main(argv: list[str] | None = None, prog: str = "train_base") -> int:
    """``prog``: the name errors are reported under (the CLI passes 'dptune shapesworld')."""
    parser = build_arg_parser()
    parser.prog = f"{prog} train-base" if prog != "train_base" else prog
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        cfg = config_from_args(args)
        log = train_base(cfg, args.out, resume=not args.no_resume, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, ArtefactError) as e:  # one line naming the problem and the fix
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; checkpoint saved, run the same command again to resume", file=sys.stderr)
        return 130
    print(
        f"saved {args.out}: {log['vae_steps']} VAE + {log['unet_steps']} U-Net steps in "
        f"{log['wall_time_s'] / 60:.1f} min, {log['param_counts']['total']:,} parameters"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["TrainBaseConfig", "build_arg_parser", "config_from_args", "main", "to_pixels", "tokenize_captions",
           "train_base"]
