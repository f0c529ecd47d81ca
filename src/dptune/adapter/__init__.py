"""The discriminative adapter (paper Sec. 3.1, Eq. 2) and its heads: a DETR-style probe on U-Net features.

>>> cfg = AdapterConfig(in_channels=1280, text_dim=1024)       # SD 2.1 mid block
>>> adapter = DiscriminativeAdapter(cfg)
>>> out = adapter(features, timesteps)                          # (B, 1280, 8, 8), (B,)
>>> s = adapter.match_score(out, text_pooled)                   # (B,) s(y, z) in [-1, 1]
"""

from dptune.adapter.build import RANDOM_ADAPTER, load_probe, new_adapter, probe_settings
from dptune.adapter.config import AdapterConfig
from dptune.adapter.heads import max_cosine, max_cosine_matrix
from dptune.adapter.io import AdapterMismatchError, load_adapter, load_adapter_config, save_adapter
from dptune.adapter.model import AdapterOutput, DiscriminativeAdapter, parameter_counts
from dptune.adapter.probe import DPTProbe

__all__ = [
    "RANDOM_ADAPTER",
    "load_probe",
    "new_adapter",
    "probe_settings",
    "AdapterConfig",
    "AdapterMismatchError",
    "AdapterOutput",
    "DPTProbe",
    "DiscriminativeAdapter",
    "load_adapter",
    "load_adapter_config",
    "max_cosine",
    "max_cosine_matrix",
    "parameter_counts",
    "save_adapter",
]
