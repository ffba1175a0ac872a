"""Uniform mixing: the baseline every other strategy is measured against."""
from __future__ import annotations

from training.mixer.base import MixtureStrategy, register_strategy


@register_strategy("uniform")
class Uniform(MixtureStrategy):
    """Equal weight per domain (the "natural" baseline in Xie et al., 2023,
    DoReMi, arXiv:2305.10429, and Albalak et al., 2023, ODM, arXiv:2312.02406)."""

    floor_share, cap_share = 0.0, float("inf")
