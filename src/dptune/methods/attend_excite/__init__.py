"""Attend-and-Excite (Chefer et al., SIGGRAPH 2023) as the registered method ``attend-excite``."""

from dptune.methods.attend_excite.config import AttendExciteConfig
from dptune.methods.attend_excite.method import AttendExciteGenerator, register

__all__ = ["AttendExciteConfig", "AttendExciteGenerator", "register"]
