"""Resumable training loop and state of ``dptune shapesworld pretrain-text``, and its atomic checkpoints.

The checkpoint folder (``<out>.checkpoints`` beside the output unless ``checkpoint_dir``) holds one
``step-NNNNNNN/`` folder: ``weights.safetensors`` (the DualEncoder, the batch-index generator's and torch's RNG
states), ``optimizer.safetensors`` (AdamW moments and step counters) and ``state.json`` (step, loss log, partial
loss window, elapsed seconds, the rest of the AdamW state, the config). ``latest.json``, written last, is the
commit point. Every file is written atomically (temp file + rename); safetensors + JSON only, never pickles.
The training data are a pure function of the config: a resumed run renders them again.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from dptune.utils.config import to_dict
from dptune.utils.io import ArtefactError, load_json, load_tensors, save_json, save_tensors
from dptune.utils.optim_state import optimizer_from_files, optimizer_to_files

# Options that may differ between a checkpoint and its resumption: where and how often checkpoints are written,
# and the CPU threads. None of them changes what is trained.
RESUMABLE_CHANGES = frozenset({"checkpoint_minutes", "checkpoint_dir", "threads"})
_MISSING = object()


def checkpoint_folder(cfg, out_dir) -> Path:
    """``cfg.checkpoint_dir``, or ``<out_dir>.checkpoints`` beside ``out_dir``."""
    out_dir = Path(out_dir)
    return Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else out_dir.with_name(out_dir.name + ".checkpoints")


def discard_checkpoint(ckpt_dir: Path) -> None:
    """Start over: drop the commit point (the next checkpoint deletes the old step folder)."""
    (ckpt_dir / "latest.json").unlink(missing_ok=True)


def _unreadable(ckpt_dir: Path, e: Exception) -> ArtefactError:
    return ArtefactError(f"checkpoint folder {ckpt_dir} cannot be resumed ({e}); delete that folder or pass "
                         "--no-resume to start over")


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested config dict -> {'model.text_hidden': 16, ...}."""
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def open_checkpoint(ckpt_dir: Path, cfg) -> tuple[Path, dict] | None:
    """The latest checkpoint's folder and JSON, or None; refuse (ValueError) one made with other options."""
    if not (ckpt_dir / "latest.json").is_file():
        return None
    try:
        folder = ckpt_dir / load_json(ckpt_dir / "latest.json")["folder"]
        meta = load_json(folder / "state.json")
        saved = _flat(meta["config"])
    except (ArtefactError, KeyError, TypeError, AttributeError) as e:
        raise _unreadable(ckpt_dir, e) from e
    now = _flat(to_dict(cfg))
    changed = sorted(k for k in saved.keys() | now.keys()
                     if k not in RESUMABLE_CHANGES and saved.get(k, _MISSING) != now.get(k, _MISSING))
    if changed:
        diffs = ", ".join(f"{k} (checkpoint {saved.get(k, 'unset')}, now {now.get(k, 'unset')})" for k in changed)
        raise ValueError(f"checkpoint folder {ckpt_dir} was made with other options: {diffs}; pass the same "
                         "options to resume, or --no-resume (or another --checkpoint-dir) to start over")
    return folder, meta


class PretrainRun:
    """Model, AdamW, batch-index generator and counters of one pretrain-text run, and their checkpoints."""

    def __init__(self, cfg, ckpt_dir: Path, model: torch.nn.Module, optimizer, generator: torch.Generator):
        self.cfg, self.ckpt_dir = cfg, Path(ckpt_dir)
        self.model, self.optimizer, self.generator = model, optimizer, generator
        self.step = 0
        self.losses: list[list[float]] = []
        self.window: list[float] = []  # losses of the steps since the last logged mean
        self.mid_update = False  # True while the weights hold a step that ``record`` has not counted yet
        self._elapsed0 = 0.0
        self._t0 = self._last_ckpt = time.monotonic()
        self._mark_boundary()

    def _mark_boundary(self) -> None:
        """The RNG states between two steps: a checkpoint saves these, not ones a started step has advanced."""
        self._rng = {"rng.generator": self.generator.get_state(), "rng.torch": torch.get_rng_state()}

    def elapsed(self) -> float:
        return self._elapsed0 + time.monotonic() - self._t0

    def record(self, loss: float) -> None:
        """Count a finished step; keep the mean loss of each ``log_every``-step window as ``[step, loss]``."""
        self.step += 1
        self.window.append(loss)
        if len(self.window) == self.cfg.log_every:
            self.losses.append([self.step, round(float(np.mean(self.window)), 4)])
            self.window = []
        self._mark_boundary()

    def maybe_checkpoint(self) -> None:
        if time.monotonic() - self._last_ckpt >= 60.0 * self.cfg.checkpoint_minutes:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write ``step-*/`` (weights + RNG, optimiser, JSON state), then point ``latest.json`` at it."""
        name = f"step-{self.step:07d}"
        folder = self.ckpt_dir / name
        weights = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        save_tensors(folder / "weights.safetensors", {**weights, **self._rng})
        opt_tensors, opt_meta = optimizer_to_files(self.optimizer)
        save_tensors(folder / "optimizer.safetensors", opt_tensors)
        state = {"step": self.step, "losses": self.losses, "window": self.window, "elapsed_s": self.elapsed()}
        save_json(folder / "state.json", {"state": state, "optimizer": opt_meta, "config": to_dict(self.cfg)})
        save_json(self.ckpt_dir / "latest.json", {"folder": name})  # the commit point
        for old in self.ckpt_dir.glob("step-*"):
            if old.name != name and old.is_dir():
                shutil.rmtree(old)
        self._last_ckpt = time.monotonic()

    def restore(self, folder: Path, meta: dict) -> None:
        """Load a checkpoint from :func:`open_checkpoint`; any unreadable part raises one ArtefactError."""
        try:
            weights = load_tensors(folder / "weights.safetensors")
            opt_tensors = load_tensors(folder / "optimizer.safetensors")
            self.model.load_state_dict({k[6:]: v for k, v in weights.items() if k.startswith("model.")})
            self.optimizer.load_state_dict(optimizer_from_files(opt_tensors, meta["optimizer"]))
            self.generator.set_state(weights["rng.generator"])
            torch.set_rng_state(weights["rng.torch"])
            state = meta["state"]
            step, elapsed = int(state["step"]), float(state["elapsed_s"])
            losses, window = [list(x) for x in state["losses"]], [float(x) for x in state["window"]]
        except (ArtefactError, KeyError, RuntimeError, ValueError, TypeError) as e:
            raise _unreadable(self.ckpt_dir, e) from e
        self.step, self.losses, self.window, self._elapsed0 = step, losses, window, elapsed
        self._t0 = self._last_ckpt = time.monotonic()
        self._mark_boundary()


class DeferredStop:
    """While training, SIGINT / SIGTERM only set ``requested`` and the loop stops at the next step boundary, so the
    checkpoint written on the way out never holds half an optimiser step. A second signal stops at once."""

    def __init__(self):
        self.requested = False
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> DeferredStop:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old = {}
        return False


def train_steps(run: PretrainRun, data, loss_fn, progress: bool) -> None:
    """Steps ``run.step`` .. ``cfg.steps`` of AdamW on ``loss_fn(model, pixels, ids, neg_ids)`` (100-step warm-up),
    with periodic checkpoints and a last one; on Ctrl-C / SIGTERM, checkpoint and re-raise KeyboardInterrupt."""
    from tqdm.auto import tqdm

    cfg, (pixels, ids, neg_ids) = run.cfg, data
    run.model.train()
    try:
        with DeferredStop() as stop, tqdm(total=cfg.steps, initial=run.step, desc="text pretraining",
                                          disable=not progress) as bar:
            while run.step < cfg.steps:
                step = run.step
                for group in run.optimizer.param_groups:
                    group["lr"] = cfg.lr * min(1.0, (step + 1) / 100)
                idx = torch.randint(cfg.num_images, (cfg.batch_size,), generator=run.generator)
                loss = loss_fn(run.model, pixels[idx], ids[idx], neg_ids[idx])
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"pretrain_text: loss is {loss.item()} at step {step}; lower --lr")
                run.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                run.mid_update = True
                run.optimizer.step()
                run.record(loss.item())
                run.mid_update = False
                bar.update(1)
                if stop.requested:
                    raise KeyboardInterrupt
                run.maybe_checkpoint()
        run.checkpoint()
    except KeyboardInterrupt:
        if not run.mid_update:  # else the last periodic checkpoint stands
            run.checkpoint()
        raise
