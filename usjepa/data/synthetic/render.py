"""Render one synthetic B-mode frame with its ground-truth scan-region mask."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from usjepa.data.synthetic.geometry import GeometryKind, ScanGeometry, sample_geometry
from usjepa.data.synthetic.overlays import draw_inside, draw_outside
from usjepa.data.synthetic.phantom import (
    LESION_ATTEN,
    LESION_CLASSES,
    LESION_ECHO,
    Anatomy,
    attenuation_gain,
    draw_anatomy,
    draw_lesion,
    echogenicity,
    lesion_inside,
    log_compress,
    smooth_noise,
    speckle_envelope,
)


@dataclass(frozen=True)
class Patient:
    """What stays fixed across one patient's images: probe kind, footprint and anatomy."""

    geometry: ScanGeometry
    anatomy: Anatomy
    alpha: float
    dynamic_range_db: float


def draw_patient(size: int, rng: np.random.Generator, kind: GeometryKind | None = None) -> Patient:
    """Draw a patient; ``kind`` fixes the transducer, else it is uniform over the three."""
    kind = kind or ("convex", "linear", "phased")[int(rng.integers(3))]
    return Patient(
        sample_geometry(kind, size, rng),
        draw_anatomy(size, rng),
        float(rng.uniform(3.0, 5.0)),
        float(rng.uniform(45.0, 60.0)),
    )


def render_frame(
    patient: Patient, label: int, rng: np.random.Generator, oversample: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Render one frame.

    Args:
        patient: fixed per-patient parameters.
        label: index into :data:`LESION_CLASSES` (0 = no lesion).
        rng: per-frame generator; speckle, lesion placement, gain and overlays come from it.
        oversample: beam-grid samples per output pixel (1.0 is enough at 128 px).

    Returns:
        ``(image, mask)``: ``[S, S]`` uint8 grey levels and ``[S, S]`` uint8 scan-region
        mask (255 inside).
    """
    geom = patient.geometry
    size = geom.size
    nz = nx = int(round(size * oversample))
    xs, ys = geom.beam_positions(nz, nx)
    z_frac = np.broadcast_to((np.arange(nz, dtype=np.float32)[:, None] + 0.5) / nz, (nz, nx))
    echo = echogenicity(patient.anatomy, xs, ys, z_frac, smooth_noise((nz, nx), nz / 24, rng))
    atten = np.ones((nz, nx), dtype=np.float32)
    kind = LESION_CLASSES[label]
    if kind != "none":
        iz, ix = int(rng.uniform(0.3, 0.62) * nz), int(rng.uniform(0.28, 0.72) * nx)
        lesion = draw_lesion(
            kind, (float(xs[iz, ix]), float(ys[iz, ix])), size * rng.uniform(0.11, 0.16), rng
        )
        occ = lesion_inside(lesion, xs, ys, soft=1.2)
        echo = echo * (1.0 + (LESION_ECHO[kind] - 1.0) * occ)
        atten = (atten * (1.0 + (LESION_ATTEN[kind] - 1.0) * occ)).astype(np.float32)
    env = speckle_envelope(
        echo,
        rng,
        axial_sigma=rng.uniform(0.6, 0.9) * oversample,
        lateral_sigma=rng.uniform(0.9, 1.4) * oversample,
        cycles=0.35,
    )
    env = env * attenuation_gain(atten, patient.alpha, tgc=rng.uniform(0.75, 0.95))
    # electronic noise floor, ~30 dB below the mean echo: shadows are dark, not empty
    floor = 0.03 * float(env.mean())
    env = env + floor * np.abs(rng.standard_normal(env.shape).astype(np.float32))
    db = 20.0 * np.log10(env + 1e-6)
    # Gain puts the mean display level inside the scan region at a class-independent
    # target, so brightness alone never tells the label. Clipping (anechoic areas at 0)
    # makes the level non-linear in the gain, hence a few secant-free correction steps
    # on the scan-converted image itself.
    target = rng.uniform(0.38, 0.5) * 255.0
    dr = patient.dynamic_range_db
    gain = float(db.mean()) + dr * (1.0 - target / 255.0)
    map_x, map_z, inside = geom.pixel_to_beam(nz, nx)
    for _ in range(3):
        beam = (log_compress(env, dr, gain) * 255.0).astype(np.float32)
        image = cv2.remap(beam, map_x, map_z, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        level = float(image[inside].mean())
        if abs(level - target) < 0.5:
            break
        gain += (level - target) / 255.0 * dr  # one grey level = dr / 255 dB
    image = np.where(inside, image, 0.0).astype(np.uint8)
    draw_outside(image, inside, geom, rng)
    draw_inside(image, inside, rng)
    return image, inside.astype(np.uint8) * 255
