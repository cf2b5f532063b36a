"""Phantom physics: signal equations against reference formulas and tissue contrasts per profile."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulations.phantom.profiles import (
    InversionRecoveryConfig,
    ScannerProfileConfig,
    SpinEchoConfig,
    load_profiles,
)
from simulations.phantom.signal import (
    CONTRASTS,
    inversion_recovery,
    mix_partial_volumes,
    spin_echo,
    tissue_signals,
)
from simulations.phantom.subject import SubjectVolumes, simulate_subject
from simulations.phantom.template import load_template
from simulations.phantom.tissues import TISSUES, load_tissue_table
from simulations.phantom.tumour import LABEL_ENHANCING

SPACING = 4.0
PROFILES = load_profiles()
T1, T1CE, T2, FLAIR = (CONTRASTS.index(c) for c in ("t1", "t1ce", "t2", "flair"))
WM, GM, CSF = (TISSUES.index(t) for t in ("wm", "gm", "csf"))


def test_spin_echo_matches_reference_formula() -> None:
    seq = SpinEchoConfig(tr_ms=600.0, te_ms=10.0)
    pd, t1, t2 = 0.7, 1000.0, 80.0
    expected = pd * (1 - math.exp(-600 / 1000)) * math.exp(-10 / 80)
    assert spin_echo(np.array(pd), np.array(t1), np.array(t2), seq) == pytest.approx(expected)


def test_inversion_recovery_is_signed_and_matches_reference() -> None:
    seq = InversionRecoveryConfig(tr_ms=9000.0, te_ms=120.0, ti_ms=2500.0)
    for t1 in (1000.0, 4200.0):
        expected = (1 - 2 * math.exp(-2500 / t1) + math.exp(-9000 / t1)) * math.exp(-120 / 100)
        got = inversion_recovery(np.array(1.0), np.array(t1), np.array(100.0), seq)
        assert got == pytest.approx(expected)
    # CSF-like T1 is still inverted (negative) before its null: magnitude comes after mixing.
    early = seq.model_copy(update={"ti_ms": 2000.0})
    assert inversion_recovery(np.array(1.0), np.array(4200.0), np.array(100.0), early) < 0


def test_t1ce_shortens_t1_by_relaxivity_times_concentration() -> None:
    table = load_tissue_table()
    profile = PROFILES[0]
    field = profile.field_strength_t
    pd, t1, t2 = table.relaxation("enhancing", field)
    gd = table.tissue["enhancing"].gd_mm * profile.gd_dose_scale
    t1_post = 1.0 / (1.0 / t1 + table.relaxivity(field) * gd)
    expected = spin_echo(np.array(pd), np.array(t1_post), np.array(t2), profile.t1)
    signals = tissue_signals(profile, table)
    assert signals[T1CE, TISSUES.index("enhancing")] == pytest.approx(float(expected))
    # Tissues without contrast uptake look the same before and after contrast.
    assert signals[T1CE, WM] == pytest.approx(signals[T1, WM])


def test_partial_volume_mixing_is_fraction_weighted_sum() -> None:
    rng = np.random.default_rng(0)
    fractions = rng.dirichlet(np.ones(len(TISSUES)), size=(3, 4, 5)).transpose(3, 0, 1, 2)
    signals = rng.uniform(-0.2, 1.0, size=(len(CONTRASTS), len(TISSUES)))
    got = mix_partial_volumes(fractions.astype(np.float32), signals)
    expected = np.einsum("ct,tdhw->cdhw", signals, fractions)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_tissue_table_covers_every_tissue_and_field() -> None:
    table = load_tissue_table()
    for tissue in TISSUES:
        _, t1_low, _ = table.relaxation(tissue, 1.5)
        _, t1_high, _ = table.relaxation(tissue, 3.0)
        assert t1_high > t1_low, f"T1 of {tissue} should lengthen with field strength"


def _hgg_subject(profile_index: int) -> SubjectVolumes:
    """The first HGG subject of a site scanned with the given default profile."""
    template = load_template(SPACING)
    for subject in range(20):
        vol = simulate_subject(
            template=template,
            profile=PROFILES[profile_index],
            table=load_tissue_table(),
            seed=3,
            site=profile_index,
            subject=subject,
            tumour_fraction=1.0,
        )
        if vol.grade == "HGG":
            return vol
    raise RuntimeError("no HGG subject in 20 draws")


def _mean(vol: SubjectVolumes, contrast: int, tissue: int, threshold: float) -> float:
    pure = (vol.fractions[tissue] > threshold) & (vol.seg == 0) & vol.brain_mask
    assert pure.sum() >= 20, f"too few pure voxels of {TISSUES[tissue]}"
    return float(vol.images[contrast][pure].mean())


@pytest.mark.parametrize("index", range(len(PROFILES)), ids=[p.name for p in PROFILES])
def test_tissue_contrasts_look_like_mri(index: int) -> None:
    vol = _hgg_subject(index)

    def mean(c: int, t: int) -> float:
        return _mean(vol, c, t, 0.8 if t == CSF else 0.9 if t == WM else 0.7)

    assert mean(T2, CSF) > mean(T2, WM), "CSF must be bright on T2"
    assert mean(T1, CSF) < mean(T1, WM), "CSF must be dark on T1"
    assert mean(FLAIR, CSF) < mean(FLAIR, WM), "FLAIR must suppress CSF"
    assert mean(T1, WM) > mean(T1, GM), "WM must be brighter than GM on T1"
    assert mean(T2, GM) > mean(T2, WM), "GM must be brighter than WM on T2"

    enhancing = vol.seg == LABEL_ENHANCING
    pre = vol.images[T1][enhancing].mean() / mean(T1, WM)
    post = vol.images[T1CE][enhancing].mean() / mean(T1CE, WM)
    assert post > 1.3 * pre and post > 1.2, "the enhancing rim must light up on T1ce"


def test_rician_noise_is_relative_to_white_matter() -> None:
    base = {**PROFILES[0].model_dump(), "bias_field_amplitude": 0.0}
    spreads = []
    for noise in (0.01, 0.1):
        profile = ScannerProfileConfig.model_validate({**base, "noise_rel_wm": noise})
        vol = simulate_subject(
            template=load_template(SPACING),
            profile=profile,
            table=load_tissue_table(),
            seed=1,
            site=0,
            subject=0,
            tumour_fraction=0.0,
        )
        pure = (vol.fractions[WM] > 0.95) & vol.brain_mask
        values = vol.images[T1][pure]
        spreads.append(values.std() / values.mean())
    assert spreads[1] > 3 * spreads[0]
