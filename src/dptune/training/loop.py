"""The training loop shared by every trained method (DPT stages 1 and 2, token methods), on accelerate.

Small on purpose: what is trained comes as a :class:`~dptune.training.task.TrainingTask`; checkpoints, data
order and seeds are library functions. Multi-GPU: ``accelerate launch -m dptune.cli.main probe ...`` runs the
same code on every process.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dptune.training import checkpoint as ckpt
from dptune.training.config import TrainConfig
from dptune.training.data import fixed_batches, train_loader
from dptune.training.task import TrainingTask
from dptune.utils.config import to_dict
from dptune.utils.io import save_json


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    validation: list[dict] = field(default_factory=list)
    best: dict | None = None
    stopped_early: bool = False


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Randomness of micro-batch ``micro`` of step ``step`` on process ``rank`` (resume-exact)."""
    return ((seed * 1_000_003 + step) * 997 + micro) * 131 + rank


def make_accelerator(cfg, find_unused_parameters: bool = False):
    """accelerate's Accelerator for ``cfg`` (CPU gloo group when no GPU, TensorBoard logging)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)
    cuda = torch.cuda.is_available()  # cpu=True lets accelerate form a gloo group for CPU multi-process runs
    return Accelerator(cpu=not cuda, mixed_precision=cfg.mixed_precision if cuda else "no",
                       log_with="tensorboard", project_dir=str(cfg.out_dir), kwargs_handlers=[ddp])


class Trainer:
    """Trains ``task`` under the generic settings of ``cfg`` (steps, batch, optimiser, intervals, seed)."""

    def __init__(self, cfg, task: TrainingTask, accelerator=None, progress: bool = True):
        self.cfg, self.out, self.task = cfg, Path(cfg.out_dir), task
        self.acc = accelerator or make_accelerator(cfg)
        self.progress = progress and self.acc.is_main_process
        # self.model: the plain objective (names in checkpoints never carry DDP's "module." prefix);
        # self.objective: what accelerate.prepare returns (DDP-wrapped in multi-process runs)
        self.model = self.objective = task.objective
        self.optimizer = torch.optim.AdamW(task.param_groups, lr=cfg.lr, betas=tuple(cfg.betas))
        from diffusers.optimization import get_scheduler

        self.scheduler = get_scheduler(cfg.lr_schedule, self.optimizer, num_warmup_steps=cfg.warmup_steps,
                                       num_training_steps=cfg.steps)
        self.step, self.best, self.history = 0, None, []
        self.train_seconds, self._fit_start = 0.0, None  # wall time spent training, summed over resumes

    # ---- state -----------------------------------------------------------------------------------
    def resume(self) -> None:
        path = ckpt.latest_checkpoint(self.out)
        if path is None:
            return
        from dptune.utils.io import load_json

        ckpt.check_resume_config(load_json(path / "config.json"), to_dict(self.cfg))
        state = ckpt.load_checkpoint(path, self.model, self.optimizer, self.scheduler)
        self.step, self.best = state["step"], state.get("best")
        self.history = state.get("history", [])
        self.train_seconds = float(state.get("train_seconds", 0.0))

    def save(self, name: str | None = None) -> Path | None:
        if not self.acc.is_main_process:
            return None
        state = {"step": self.step, "best": self.best, "history": self.history,
                 "world_size": self.acc.num_processes, "train_seconds": self.elapsed()}
        path = ckpt.write_checkpoint(self.out, name or f"step-{self.step:07d}", self.model, self.optimizer,
                                     self.scheduler, state, to_dict(self.cfg), self.task.export)
        ckpt.prune_checkpoints(self.out, self.cfg.keep_checkpoints)
        return path

    def export(self, name: str) -> None:
        """User-facing copy (adapter/, lora/, config.json) in ``<out>/<name>/``, written atomically."""
        if not self.acc.is_main_process:
            return
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.out))
        self.task.export(tmp)
        save_json(tmp / "config.json", to_dict(self.cfg))
        total = self.elapsed() + self.task.upstream_seconds  # what the exported weights cost to train
        save_json(tmp / "state.json", {"step": self.step, "train_seconds": round(total, 1),
                                       "validation": self.history[-1] if self.history else None})
        shutil.rmtree(self.out / name, ignore_errors=True)
        tmp.rename(self.out / name)

    def elapsed(self) -> float:
        """Training wall time so far, this run plus the runs it resumed (the comparison's training cost)."""
        since = time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0
        return self.train_seconds + since

    # ---- validation ------------------------------------------------------------------------------
    def validate(self, val_batches: list[dict]) -> dict:
        if self.task.validate is None:
            return {}
        metrics = self.task.validate(val_batches)  # holds "select": higher = better checkpoint
        metrics["step"] = self.step
        self.history.append(metrics)
        if self.best is None or metrics["select"] > self.best["select"]:
            self.best = metrics
            self.export("best")
        return metrics

    # ---- one optimiser step ------------------------------------------------------------------------
    def train_step(self, batches) -> dict[str, float]:
        cfg, rank = self.cfg, self.acc.process_index
        sums: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            batch = next(batches)
            seed = step_seed(cfg.seed, self.step, micro, rank)
            gen = torch.Generator().manual_seed(seed)
            torch.manual_seed(seed)  # dropout
            inputs = self.task.prepare(batch, gen)
            sync = micro == cfg.grad_accum - 1  # DDP all-reduces only on the last micro-batch
            with contextlib.nullcontext() if sync else self.acc.no_sync(self.objective):
                with self.acc.autocast():
                    total, terms = self.objective(inputs)
                self._check_finite(total, terms)
                self.acc.backward(total / cfg.grad_accum)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item() / cfg.grad_accum
        self.acc.clip_grad_norm_(self.objective.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        sums["lr"] = self.scheduler.get_last_lr()[0]
        return sums

    def _check_finite(self, total: torch.Tensor, terms: dict) -> None:
        if torch.isfinite(total):
            return
        last = ckpt.latest_checkpoint(self.out)
        detail = {k: round(v.item(), 4) for k, v in terms.items()}
        raise TrainingDiverged(
            f"loss is {total.item()} at step {self.step} (terms: {detail}); last good checkpoint: "
            f"{last or 'none yet'}. Lower --lr or check the data; resume continues from that checkpoint")

    # ---- the loop ------------------------------------------------------------------------------------
    def fit(self, resume: bool = True) -> TrainResult:
        from tqdm.auto import tqdm

        cfg = self.cfg
        if resume:
            self.resume()
        self.objective, self.optimizer = self.acc.prepare(self.objective, self.optimizer)
        train_ds, val_ds = self.task.datasets
        loader = train_loader(train_ds, cfg, self.step * cfg.grad_accum, self.acc.process_index,
                              self.acc.num_processes)
        val_batches = fixed_batches(val_ds, cfg.batch_size) if self.acc.is_main_process and val_ds else []
        self.acc.init_trackers("dptune", config={k: v for k, v in to_dict(cfg).items()
                                                 if isinstance(v, int | float | str | bool)})
        batches, t0, stopped = iter(loader), time.perf_counter(), False
        self._fit_start = t0
        desc = f"dptune {getattr(cfg, 'stage', 'train')}"
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, desc=desc)
        self.objective.train()
        while self.step < cfg.steps:
            logs = self.train_step(batches)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['total']:.3f}", refresh=False)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                self.log(logs)
            if self.step % cfg.validate_every == 0 or self.step == cfg.steps:
                if self.acc.is_main_process:
                    self.log(self.validate(val_batches), prefix="val/")
            budget = cfg.max_minutes is not None and time.perf_counter() - t0 > 60 * cfg.max_minutes
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or budget:
                self.save()
            if budget:
                stopped = True
                break
        bar.close()
        self.acc.wait_for_everyone()
        self.export("final")
        self.acc.end_training()
        return TrainResult(self.out, self.step, self.history, self.best, stopped)

    def log(self, values: dict, prefix: str = "train/") -> None:
        if not self.acc.is_main_process:
            return
        clean = {k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}
        clean["step"] = self.step
        if prefix == "train/":  # throughput since the previous training log line
            now, (last_t, last_step) = time.perf_counter(), getattr(self, "_last_log", (None, 0))
            if last_t is not None and now > last_t:
                rate = (self.step - last_step) / (now - last_t)
                global_batch = self.cfg.batch_size * self.cfg.grad_accum * self.acc.num_processes
                clean.update(steps_per_s=round(rate, 4), samples_per_s=round(rate * global_batch, 2))
            self._last_log = (now, self.step)
        self.acc.log({prefix + k: v for k, v in clean.items() if k != "step"}, step=self.step)
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            import json

            f.write(json.dumps({"kind": prefix.rstrip("/"), **clean}) + "\n")


def run_task(cfg, build_task, find_unused_parameters: bool = False, resume: bool = True,
             progress: bool = True) -> TrainResult:
    """The shared way to train: ``cfg.out_dir``, the accelerator, ``build_task(device)`` on its device, fit
    (resuming from ``cfg.out_dir`` if it holds a checkpoint). ``find_unused_parameters``: DDP must expect
    parameters that get no gradient in some steps."""
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    acc = make_accelerator(cfg, find_unused_parameters)
    return Trainer(cfg, build_task(acc.device), acc, progress=progress).fit(resume=resume)


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> TrainResult:
    """Run DPT stage ``cfg.stage`` to ``cfg.steps`` (resuming from ``cfg.out_dir`` if it holds a checkpoint)."""
    from dptune.training.setup import build_dpt_task

    return run_task(cfg, lambda device: build_dpt_task(cfg, device), dpt_unused_parameters(cfg), resume, progress)


def dpt_unused_parameters(cfg: TrainConfig) -> bool:
    """Stage-2 LoRA after the probed block gets no gradient without a denoising term: DDP must know."""
    return cfg.stage == "tune" and cfg.mse_weight == 0 and cfg.contrast_weight == 0
