"""The ShapesWorld demo: probe, tune, self-correct and measure DPT end to end on a CPU (``dptune demo``)."""

from dptune.demo.run import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
