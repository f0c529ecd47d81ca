"""Datasets that feed DPT: the sample contract shared by ShapesWorld and COCO/RefCOCO.

Submodules load lazily so that ``dptune --help`` and light imports stay fast.
"""

from typing import Any

__all__ = ["DPTDataset", "DPTSample", "collate_samples"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from dptune.data import interface

        return getattr(interface, name)
    raise AttributeError(f"module 'dptune.data' has no attribute {name!r}")
