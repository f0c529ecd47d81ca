"""Datasets that feed DPT: the sample contract shared by ShapesWorld and COCO/RefCOCO."""

from dptune.data.interface import DPTDataset, DPTSample, collate_samples

__all__ = ["DPTSample", "DPTDataset", "collate_samples"]
