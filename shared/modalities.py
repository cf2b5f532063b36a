"""Canonical MR modality names and the aliases public datasets use for them."""

from __future__ import annotations

from shared.lookup import look_up

#: Canonical names, in the order fedmm stacks them when a config does not say otherwise.
CANONICAL_MODALITIES: tuple[str, ...] = (
    "t1", "t1ce", "t2", "flair", "pd", "mra", "dwi", "adc", "t1_inphase", "t1_outphase", "ct",
)

# BrainMVP's normalisation (docs/methods.md) plus the spellings of BraTS 2021/2023, MSD,
# UPENN-GBM, UCSF-PDGM, IXI, ISLES 2022 and CHAOS. CHAOS's dual-echo T1 (in-phase and
# opposed-phase gradient echo on one grid) keeps two names of its own: calling either "t1"
# would pair it with brain spin-echo T1. Keys are lower-case.
_ALIASES: dict[str, str] = {
    "t1": "t1", "t1n": "t1", "t1w": "t1", "native_t1": "t1",
    "t1ce": "t1ce", "t1c": "t1ce", "t1gd": "t1ce", "t1_gd": "t1ce", "t1post": "t1ce",
    "t2": "t2", "t2w": "t2",
    "flair": "flair", "t2f": "flair", "t2_flair": "flair", "t2flair": "flair",
    "pd": "pd", "pdw": "pd",
    "mra": "mra",
    "dwi": "dwi", "adc": "adc",
    "t1_inphase": "t1_inphase", "inphase": "t1_inphase", "in_phase": "t1_inphase",
    "t1_outphase": "t1_outphase", "outphase": "t1_outphase", "out_phase": "t1_outphase",
    "opposed_phase": "t1_outphase",
    "t2spir": "t2", "t2_spir": "t2",
    "ct": "ct",
}


def canonical_modality(name: str) -> str:
    """Map a dataset's modality spelling to fedmm's canonical name.

    Raises:
        ValueError: the name is unknown; the message lists the known names and the closest one.
    """
    return look_up(name.strip().lower(), _ALIASES, kind="modality",
                   fix=f"Canonical names: {sorted(set(_ALIASES.values()))}.")
