"""MR signal equations: tissue fractions to noise-free T1, T1ce, T2 and FLAIR contrasts."""

from __future__ import annotations

from typing import Final

import numpy as np

from simulations.phantom.profiles import (
    InversionRecoveryConfig,
    ScannerProfileConfig,
    SpinEchoConfig,
)
from simulations.phantom.tissues import TISSUES, TUMOUR_TISSUES, TissueTableConfig

#: Output contrasts in channel order, named as in BraTS 2021 file names.
CONTRASTS: Final[tuple[str, ...]] = ("t1", "t1ce", "t2", "flair")


def spin_echo(pd: np.ndarray, t1: np.ndarray, t2: np.ndarray, seq: SpinEchoConfig) -> np.ndarray:
    """Spin-echo signal `PD (1 - exp(-TR/T1)) exp(-TE/T2)` (long-TR, 90-degree limit)."""
    return pd * (1.0 - np.exp(-seq.tr_ms / t1)) * np.exp(-seq.te_ms / t2)


def inversion_recovery(
    pd: np.ndarray, t1: np.ndarray, t2: np.ndarray, seq: InversionRecoveryConfig
) -> np.ndarray:
    """Signed inversion-recovery signal `PD (1 - 2 exp(-TI/T1) + exp(-TR/T1)) exp(-TE/T2)`.

    The sign is kept so that partial-volume voxels mix magnetisations before the magnitude is
    taken, as a magnitude reconstruction does: CSF (negative at the FLAIR inversion time)
    partly cancels tissue at sulcal edges.
    """
    recovery = 1.0 - 2.0 * np.exp(-seq.ti_ms / t1) + np.exp(-seq.tr_ms / t1)
    return pd * recovery * np.exp(-seq.te_ms / t2)


def tissue_signals(profile: ScannerProfileConfig, table: TissueTableConfig) -> np.ndarray:
    """Signal of one unit fraction of each tissue in each contrast.

    T1ce shortens T1 where gadolinium accumulates: `1/T1' = 1/T1 + r1 C`.

    Args:
        profile: the scanner (field strength and sequence timings).
        table: tissue relaxation properties.

    Returns:
        `(4, T)` float64 signed signals, contrasts in `CONTRASTS` order and tissues in
        `TISSUES` order, before gain, blur, bias and noise.
    """
    field = profile.field_strength_t
    pd, t1, t2 = (np.array(v) for v in zip(*(table.relaxation(t, field) for t in TISSUES), strict=True))
    gd = np.array([table.tissue[t].gd_mm for t in TISSUES]) * profile.gd_dose_scale
    t1_post = 1.0 / (1.0 / t1 + table.relaxivity(field) * gd)
    return np.stack(
        [
            spin_echo(pd, t1, t2, profile.t1),
            spin_echo(pd, t1_post, t2, profile.t1ce_sequence),
            spin_echo(pd, t1, t2, profile.t2),
            inversion_recovery(pd, t1, t2, profile.flair),
        ]
    )


def mix_partial_volumes(
    fractions: np.ndarray, signals: np.ndarray, *, tumour_texture: np.ndarray | None = None
) -> np.ndarray:
    """Partial-volume signal: the sum over tissues of fraction times tissue signal.

    Args:
        fractions: `(T, D, H, W)` tissue fractions in `TISSUES` order.
        signals: `(4, T)` per-tissue signals from `tissue_signals`.
        tumour_texture: optional `(D, H, W)` multiplier of the tumour tissues' signal, for
            the heterogeneity of real tumours (1 means homogeneous).

    Returns:
        `(4, D, H, W)` float32 signed signals.
    """
    n_normal = len(TISSUES) - len(TUMOUR_TISSUES)
    sig = signals.astype(np.float32)
    flat = fractions.reshape(fractions.shape[0], -1)
    out = sig[:, :n_normal] @ flat[:n_normal]
    tumour = sig[:, n_normal:] @ flat[n_normal:]
    if tumour_texture is not None:
        tumour *= tumour_texture.reshape(1, -1)
    out += tumour
    return out.reshape(signals.shape[0], *fractions.shape[1:])
