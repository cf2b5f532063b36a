"""Pluggable pretext tasks: the protocol, the registry, and one module per task."""

# Importing a task module registers it.
from shared.pretext import cross_modal_contrastive as _cross_modal_contrastive
from shared.pretext import masked_modality_reconstruction as _masked_modality_reconstruction
from shared.pretext import modality_puzzle as _modality_puzzle
from shared.pretext import plane_intersection as _plane_intersection
from shared.pretext import relative_slice_position as _relative_slice_position
from shared.pretext import variance_covariance as _variance_covariance
from shared.pretext.base import Batch, PretextTask, TaskContext, TaskRequirements, Views
from shared.pretext.mixture import MixtureLoss, PretextMixture
from shared.pretext.registry import (
    available_pretexts,
    build_pretext,
    get_pretext_class,
    register_pretext,
)

__all__ = [
    "Batch",
    "MixtureLoss",
    "PretextMixture",
    "PretextTask",
    "TaskContext",
    "TaskRequirements",
    "Views",
    "available_pretexts",
    "build_pretext",
    "get_pretext_class",
    "register_pretext",
]
del _cross_modal_contrastive, _masked_modality_reconstruction, _modality_puzzle
del _plane_intersection, _relative_slice_position, _variance_covariance
