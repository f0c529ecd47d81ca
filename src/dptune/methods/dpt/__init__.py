"""DPT (Qu et al., CVPR 2024) as registered methods: ``dpt``, ``dpt+sc`` and the ``dpt+gsc`` extension."""

from dptune.methods.dpt.methods import DPTConfig, DPTSCConfig, GroundedSCConfig, register
from dptune.methods.dpt.objectives import GroundedRelation, MatchScore

__all__ = ["DPTConfig", "DPTSCConfig", "GroundedRelation", "GroundedSCConfig", "MatchScore", "register"]
