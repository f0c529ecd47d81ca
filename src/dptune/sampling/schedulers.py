"""Named samplers for ``DPTPipeline`` / ``dptune generate``, built from the model's own scheduler config."""

from __future__ import annotations

# name -> (diffusers class, config overrides). PNDM skips the Runge-Kutta warm-up as SD's shipped config does;
# "dpmpp" is DPM-Solver++ (2nd-order multistep), the usual fast SD sampler.
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "dpmpp": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
}


def make_scheduler(name: str, base_config):
    """A fresh scheduler ``name`` sharing the model's noise schedule (betas, prediction type, offsets)."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose from {sorted(SCHEDULERS)}")
    cls_name, overrides = SCHEDULERS[name]
    return getattr(diffusers, cls_name).from_config(base_config, **overrides)


def scheduler_name(scheduler) -> str | None:
    """The short name of a scheduler instance, or None when it is not one of :data:`SCHEDULERS`."""
    cls_name = type(scheduler).__name__
    return next((n for n, (c, _) in SCHEDULERS.items() if c == cls_name), None)
