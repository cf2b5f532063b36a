"""Random gliomas: placement, mass effect, irregular shape and BraTS 2021 labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from scipy import ndimage as ndi

from simulations.phantom.fields import smooth_random_field
from simulations.phantom.template import BrainTemplate
from simulations.phantom.tissues import TISSUES

Grade = Literal["HGG", "LGG", "none"]

#: Share of tumours that are high-grade (BraTS 2021 is mostly glioblastoma).
HGG_FRACTION: Final = 0.7
#: BraTS 2021 label values: necrotic / non-enhancing core, edema, enhancing tumour.
LABEL_CORE: Final = 1
LABEL_EDEMA: Final = 2
LABEL_ENHANCING: Final = 4
LABELS: Final[tuple[int, ...]] = (0, LABEL_CORE, LABEL_EDEMA, LABEL_ENHANCING)
# Placement: gliomas grow mostly in the white matter of the cerebral hemispheres.
_MIN_WM = 0.6
_MIN_WORLD_Z_MM = -10.0  # above the tentorium in MNI space: no cerebellar tumours
_N_CANDIDATES = 4096


@dataclass(frozen=True)
class TumourPlan:
    """Sampled parameters of one tumour (drawn first, then grown deterministically).

    Attributes:
        grade: "HGG" (necrotic core, enhancing rim, edema) or "LGG" (non-enhancing core,
            edema).
        centre_vox: `(3,)` tumour centre in subject voxels.
        radii_mm: `(3,)` semi-axes of the solid tumour (the enhancing rim's outer edge).
        rotation: `(3, 3)` orientation of the ellipsoid.
        core_ratio: HGG necrosis radius relative to the solid radius (0 for LGG).
        edema_ratio: edema reach relative to the solid radius.
        mass_effect: push strength in [0, 1): surrounding tissue moves outward by up to
            about `mass_effect * 0.6 * radius`.
    """

    grade: Literal["HGG", "LGG"]
    centre_vox: np.ndarray
    radii_mm: np.ndarray
    rotation: np.ndarray
    core_ratio: float
    edema_ratio: float
    mass_effect: float

    @property
    def mean_radius_mm(self) -> float:
        return float(np.mean(self.radii_mm))


@dataclass(frozen=True)
class TumourVolumes:
    """A subject's tissues with its tumour grown in.

    Attributes:
        fractions: `(T, D, H, W)` float32 tissue fractions in `TISSUES` order.
        seg: `(D, H, W)` uint8 BraTS 2021 labels (0, 1, 2, 4), only inside the brain.
        texture: `(D, H, W)` float32 multiplier of the tumour tissues' signal, or None.
    """

    fractions: np.ndarray
    seg: np.ndarray
    texture: np.ndarray | None


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))  # uniform over rotations and reflections; fine for shapes


def sample_tumour_plan(
    rng: np.random.Generator,
    *,
    template: BrainTemplate,
    coords: np.ndarray,
    tumour_fraction: float,
) -> TumourPlan | None:
    """Decide whether a subject has a tumour and draw its grade, size, shape and place.

    Args:
        rng: source of randomness.
        template: the template the subject was warped from.
        coords: `(3, D, H, W)` template coordinates of each subject voxel, used to place the
            tumour in the subject's own white matter.
        tumour_fraction: probability that the subject has a tumour.

    Returns:
        The plan, or None for a healthy subject.
    """
    if rng.random() >= tumour_fraction:
        return None
    s = template.spacing_mm
    hgg = bool(rng.random() < HGG_FRACTION)
    # At least three voxels of radius so that the rim and core stay resolvable.
    r_min = max(12.0, 3.0 * s)
    radius = float(rng.uniform(r_min, max(r_min, 22.0 if hgg else 26.0)))
    radii = radius * np.clip(np.exp(rng.normal(0.0, 0.15, size=3)), 0.75, 1.3)
    rotation = _random_rotation(rng)
    if hgg:
        # The enhancing rim must stay at least 1.5 voxels thick to appear in the labels.
        core_ratio = float(min(rng.uniform(0.35, 0.65), 1.0 - 1.5 * s / radius))
        edema_ratio = float(rng.uniform(1.7, 2.5))
        mass_effect = float(rng.uniform(0.25, 0.45))
    else:
        core_ratio = 0.0
        edema_ratio = float(rng.uniform(1.2, 1.6))
        mass_effect = float(rng.uniform(0.1, 0.25))

    shape = np.array(coords.shape[1:])
    cand = rng.integers(0, shape, size=(_N_CANDIDATES, 3))
    src = coords[:, cand[:, 0], cand[:, 1], cand[:, 2]]
    wm = ndi.map_coordinates(template.tissues[0], src, order=1)
    depth = ndi.map_coordinates(template.depth_mm, src, order=1)
    world_z = template.affine[2, :3] @ src + template.affine[2, 3]
    valid = (wm >= _MIN_WM) & (depth >= max(0.8 * radius, 10.0)) & (world_z > _MIN_WORLD_Z_MM)
    if not valid.any():  # tiny grids: fall back to the deepest white matter drawn
        valid = depth == depth[wm >= 0.3].max() if (wm >= 0.3).any() else depth == depth.max()
    pick = cand[rng.choice(np.flatnonzero(valid))]
    centre = pick + rng.uniform(-0.5, 0.5, size=3)
    return TumourPlan(
        grade="HGG" if hgg else "LGG",
        centre_vox=centre,
        radii_mm=radii,
        rotation=rotation,
        core_ratio=core_ratio,
        edema_ratio=edema_ratio,
        mass_effect=mass_effect,
    )


def _box(centre: np.ndarray, half: float, shape: tuple[int, ...]) -> tuple[slice, ...]:
    lo = np.maximum(np.floor(centre - half).astype(int), 0)
    hi = np.minimum(np.ceil(centre + half).astype(int) + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _offsets(box: tuple[slice, ...], centre: np.ndarray) -> list[np.ndarray]:
    """Broadcastable per-axis voxel offsets from `centre` inside `box`."""
    out = []
    for axis, sl in enumerate(box):
        view = [1, 1, 1]
        view[axis] = sl.stop - sl.start
        out.append((np.arange(sl.start, sl.stop, dtype=np.float32) - centre[axis]).reshape(view))
    return out


def apply_mass_effect(coords: np.ndarray, plan: TumourPlan, *, spacing_mm: float, scale: np.ndarray) -> None:
    """Push tissue away from the tumour centre by editing `coords` in place.

    Subject voxel `x` samples the template at `x - m(x) / scale` with
    `m(x) = A (x - c) exp(-|x - c|^2 / (2 sigma^2))`: points near the centre sample closer
    to it, so anatomy spreads outward. The radial map stays one-to-one for `A < 1`.

    Args:
        coords: `(3, D, H, W)` template coordinates from `source_coordinates`.
        plan: the tumour.
        spacing_mm: voxel size in mm.
        scale: `(3,)` the subject's global scaling.
    """
    sigma = plan.mean_radius_mm / spacing_mm
    box = _box(plan.centre_vox, 3.0 * sigma, coords.shape[1:])
    dx = _offsets(box, plan.centre_vox)
    gauss = np.exp(-(dx[0] ** 2 + dx[1] ** 2 + dx[2] ** 2) / np.float32(2.0 * sigma**2))
    for axis in range(3):
        coords[axis][box] -= np.float32(plan.mass_effect / scale[axis]) * dx[axis] * gauss


def _inside(rho: np.ndarray | float, r: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of `r < rho` with a transition `width` wide (partial volume)."""
    return (0.5 * (1.0 + np.tanh((rho - r) / np.float32(2.0 * width)))).astype(np.float32)


def grow_tumour(
    normal: np.ndarray,
    plan: TumourPlan | None,
    *,
    rng: np.random.Generator,
    spacing_mm: float,
) -> TumourVolumes:
    """Grow a planned tumour into a subject's normal tissue.

    Solid tumour (necrosis + enhancing rim, or non-enhancing core) replaces all tissue where
    it grows; edema replaces only parenchyma (WM, GM), reaches further along white matter
    than into cortex, and leaves CSF alone. Fractions still sum to the soft brain mask.

    Args:
        normal: `(3, D, H, W)` WM, GM and CSF fractions of the subject.
        plan: the tumour, or None for a healthy subject.
        rng: source of randomness for the irregular shape and texture.
        spacing_mm: voxel size in mm.

    Returns:
        Fractions of all `TISSUES`, the BraTS label map and the tumour texture.
    """
    shape = normal.shape[1:]
    fractions = np.zeros((len(TISSUES), *shape), dtype=np.float32)
    fractions[:3] = normal
    seg = np.zeros(shape, dtype=np.uint8)
    if plan is None:
        return TumourVolumes(fractions=fractions, seg=seg, texture=None)

    radius = plan.mean_radius_mm
    # Edema noise is clipped at 0.7, so edema reaches at most edema_ratio / 0.7 radii.
    half = plan.edema_ratio / 0.7 * float(plan.radii_mm.max()) / spacing_mm + 2.0
    box = _box(plan.centre_vox, half, shape)
    box_shape = tuple(sl.stop - sl.start for sl in box)
    dx = _offsets(box, plan.centre_vox)
    # Ellipsoidal radius (1 on the solid tumour's edge) in the tumour's own frame.
    r2 = np.zeros(box_shape, dtype=np.float32)
    for k in range(3):
        q = sum(np.float32(plan.rotation[j, k] * spacing_mm) * dx[j] for j in range(3))
        r2 += (q / np.float32(plan.radii_mm[k])) ** 2
    r = np.sqrt(r2)
    noise = smooth_random_field(
        rng,
        box_shape,
        spacing_mm=spacing_mm,
        correlation_mm=max(10.0, 2.0 * spacing_mm),
        n_fields=3,
    )
    width = 0.5 * spacing_mm / radius  # half a voxel, in units of the radius
    r_solid = r * np.clip(1.0 + 0.2 * noise[0], 0.6, None)  # lobulated border
    r_edema = r * np.clip(1.0 + 0.3 * noise[1], 0.7, None)  # finger-like edema

    sub = fractions[:, box[0], box[1], box[2]]  # a view: edits land in `fractions`
    wm, gm, csf = sub[0], sub[1], sub[2]
    brain = wm + gm + csf
    wm_share = wm / np.maximum(brain, np.float32(1e-6))
    solid = _inside(1.0, r_solid, width)
    edema_reach = plan.edema_ratio * (0.7 + 0.3 * wm_share)  # shorter into cortex
    # Edema is wettest next to the tumour and fades outward: graded, not a flat blob.
    density = 0.7 + 0.3 * np.clip(1.0 - r_edema / edema_reach, 0.0, 1.0)
    edema_zone = np.maximum(_inside(edema_reach, r_edema, width) * density, solid)
    # Edema spreads from the tumour: drop islands the noise created away from it.
    pieces, _ = ndi.label(edema_zone > 0.25)
    attached = np.isin(pieces, np.unique(pieces[solid > 0.5]))
    edema_zone *= ndi.binary_dilation(attached & (pieces > 0))  # keep the soft border
    core = _inside(plan.core_ratio, r_solid, width) if plan.grade == "HGG" else None

    keep = 1.0 - solid
    wm *= keep
    gm *= keep
    csf *= keep
    if core is not None:
        sub[TISSUES.index("necrotic")] = core * brain
        sub[TISSUES.index("enhancing")] = (solid - core) * brain
    else:
        sub[TISSUES.index("non_enhancing")] = solid * brain
    sub[TISSUES.index("edema")] = edema_zone * (wm + gm)
    wm *= 1.0 - edema_zone
    gm *= 1.0 - edema_zone

    # Label a voxel when tumour tissue is at least half of its brain content; the class is
    # the dominant tumour tissue. Voxels outside the brain mask (brain < 0.5) stay 0.
    core_like = sub[TISSUES.index("necrotic")] + sub[TISSUES.index("non_enhancing")]
    ede = sub[TISSUES.index("edema")]
    enh = sub[TISSUES.index("enhancing")]
    total = core_like + ede + enh
    labelled = (brain >= 0.5) & (total >= 0.5 * brain)
    cls = np.argmax(np.stack([core_like, ede, enh]), axis=0)
    lut = np.array([LABEL_CORE, LABEL_EDEMA, LABEL_ENHANCING], dtype=np.uint8)
    seg[box] = np.where(labelled, lut[cls], 0)

    texture = np.ones(shape, dtype=np.float32)
    texture[box] = np.clip(1.0 + 0.12 * noise[2], 0.6, 1.4)
    return TumourVolumes(fractions=fractions, seg=seg, texture=texture)


def tumour_centre(seg: np.ndarray) -> tuple[int, int, int] | None:
    """Centroid voxel of the tumour core (labels 1 and 4), else of all labels; None if none."""
    core = np.isin(seg, (LABEL_CORE, LABEL_ENHANCING))
    target = core if core.any() else seg > 0
    if not target.any():
        return None
    i, j, k = (int(v) for v in np.rint(np.argwhere(target).mean(axis=0)))
    return i, j, k
