"""Resumable state of ``dptune shapesworld train-base``: modules, optimiser, EMA, RNG, counters and losses, and
their atomic checkpoints (safetensors + JSON, ``latest.json`` written last as the commit point)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from dptune.shapesworld.tiny_sd import build_components
from dptune.shapesworld.train_base_config import TrainBaseConfig
from dptune.utils.config import to_dict
from dptune.utils.io import ArtefactError, load_json, load_tensors, save_json, save_tensors
from dptune.utils.optim_state import optimizer_from_files, optimizer_to_files

# Fields that may change between a checkpoint and its resumption (budgets and bookkeeping, not the model).
_RESUMABLE_CHANGES = {"max_unet_steps", "max_minutes", "checkpoint_minutes", "checkpoint_dir", "threads", "log_every"}


class EMA:
    """Exponential moving average of named parameters with the usual (1 + n) / (10 + n) warm-up."""

    def __init__(self, named: dict, decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().clone() for k, p in named.items()}

    def update(self, named: dict, step: int) -> None:
        import torch

        d = min(self.decay, (1 + step) / (10 + step))  # early steps follow the weights closely
        with torch.no_grad():
            for k, p in named.items():
                self.shadow[k].lerp_(p.detach(), 1.0 - d)

    def copy_to(self, named: dict) -> None:
        import torch

        with torch.no_grad():
            for k, p in named.items():
                p.copy_(self.shadow[k])


class Run:
    """Mutable training state: modules, optimiser, EMA, RNG, counters, losses, and checkpoint I/O."""

    def __init__(self, cfg: TrainBaseConfig, ckpt_dir: Path, vocabulary: list[str]):
        import torch

        self.cfg, self.ckpt_dir, self.vocabulary = cfg, ckpt_dir, vocabulary
        torch.manual_seed(cfg.seed)  # the initial weights (a frozen text encoder keeps them for good)
        self.modules = build_components(cfg.model, vocabulary)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.state: dict[str, Any] = {"phase": "vae", "vae_step": 0, "unet_step": 0, "elapsed_s": 0.0}
        self.state.update(scaling_factor=None, losses={"vae": [], "unet": []}, phase_seconds={}, notes={})
        self._pending: list[float] = []
        self.optimizer = self.ema = None
        self._t0 = self._last_ckpt = self._lap = time.monotonic()
        self._elapsed0 = 0.0
        self.activity = "setup"  # what the wall time since the last lap is charged to

    def named_trainable(self) -> dict:
        """Phase-B parameters by name: U-Net and (unless frozen) text encoder, trained jointly."""
        named = {f"unet.{k}": p for k, p in self.modules["unet"].named_parameters()}
        if not self.cfg.freeze_text_encoder:
            named.update({f"text_encoder.{k}": p for k, p in self.modules["text_encoder"].named_parameters()})
        return named

    def start_phase(self, phase: str) -> None:
        import torch

        self.state["phase"] = phase
        if phase == "vae":
            params, lr = self.modules["vae"].parameters(), self.cfg.vae_lr
        else:
            params, lr = list(self.named_trainable().values()), self.cfg.unet_lr
            self.ema = EMA(self.named_trainable(), self.cfg.ema_decay)
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=self.cfg.weight_decay)

    def elapsed(self) -> float:
        return self._elapsed0 + time.monotonic() - self._t0

    def lap(self, next_activity: str) -> None:
        """Charge the time since the last lap to the current activity (kept across resumes), then switch."""
        now, secs = time.monotonic(), self.state["phase_seconds"]
        secs[self.activity] = round(secs.get(self.activity, 0.0) + now - self._lap, 2)
        self.activity, self._lap = next_activity, now

    def record(self, phase: str, loss: float, every: int) -> None:
        """Keep the mean loss of each ``every``-step window as ``[step, loss]``."""
        self._pending.append(loss)
        if len(self._pending) >= every:
            step = self.state[f"{phase}_step"]
            self.state["losses"][phase].append([step, sum(self._pending) / len(self._pending)])
            self._pending = []

    def maybe_checkpoint(self, minutes: float) -> None:
        if time.monotonic() - self._last_ckpt >= 60.0 * minutes:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write ``step-*`` folder (weights, optimiser, RNG, JSON state), then point ``latest.json`` at it."""
        import torch

        self.state["elapsed_s"] = self.elapsed()
        self.lap(self.activity)
        step = self.state[f"{self.state['phase']}_step"]
        name = f"step-{self.state['phase']}-{step:07d}"
        folder = self.ckpt_dir / name
        weights = {
            f"{m}.{k}": v for m in ("vae", "unet", "text_encoder") for k, v in self.modules[m].state_dict().items()
        }
        if self.ema is not None:
            weights.update({f"ema.{k}": v for k, v in self.ema.shadow.items()})
        weights["rng.generator"] = self.generator.get_state()  # uint8 tensor: data order + noise
        weights["rng.torch"] = torch.get_rng_state()
        save_tensors(folder / "weights.safetensors", weights)
        opt_tensors, opt_meta = optimizer_to_files(self.optimizer)
        save_tensors(folder / "optimizer.safetensors", opt_tensors)
        meta = {"state": self.state, "optimizer": opt_meta, "config": to_dict(self.cfg), "vocabulary": self.vocabulary}
        save_json(folder / "state.json", meta)
        save_json(self.ckpt_dir / "latest.json", {"folder": name})  # the commit point of the checkpoint
        for old in self.ckpt_dir.glob("step-*"):
            if old.name != name and old.is_dir():
                shutil.rmtree(old)
        self._last_ckpt = time.monotonic()

    def restore(self, folder: Path, meta: dict) -> None:
        import torch

        self.state = meta["state"]
        self._elapsed0 = float(self.state["elapsed_s"])
        self._t0 = self._last_ckpt = self._lap = time.monotonic()
        weights = load_tensors(folder / "weights.safetensors")
        for m in ("vae", "unet", "text_encoder"):
            prefix = f"{m}."
            sub = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            self.modules[m].load_state_dict(sub)
        if self.state["scaling_factor"] is not None:
            self.modules["vae"].register_to_config(scaling_factor=self.state["scaling_factor"])
        self.start_phase(self.state["phase"])
        if self.ema is not None:
            self.ema.shadow = {k[4:]: v.clone() for k, v in weights.items() if k.startswith("ema.")}
        opt_tensors = load_tensors(folder / "optimizer.safetensors")
        self.optimizer.load_state_dict(optimizer_from_files(opt_tensors, meta["optimizer"]))
        self.generator.set_state(weights["rng.generator"])
        torch.set_rng_state(weights["rng.torch"])


def open_checkpoint(ckpt_dir: Path, cfg: TrainBaseConfig) -> tuple[Path, dict] | None:
    """The latest checkpoint folder and its JSON, or None; refuse one made with a different recipe."""
    if not (ckpt_dir / "latest.json").is_file():
        return None
    folder = ckpt_dir / load_json(ckpt_dir / "latest.json")["folder"]
    meta = load_json(folder / "state.json")
    saved, now = meta["config"], to_dict(cfg)
    changed = sorted(k for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k])
    if changed:
        raise ArtefactError(
            f"checkpoint {folder} was made with different options {changed}; resume with the same options, "
            "or start over with resume=False (--no-resume) or another checkpoint folder"
        )
    return folder, meta
