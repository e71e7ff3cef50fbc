"""B-mode image formation on a beam grid: tissue, lesions, speckle, attenuation, log compression.

The recipe follows the textbook chain (e.g. Szabo, *Diagnostic Ultrasound Imaging*,
ch. 8-10): random sub-resolution scatterers whose strength follows the tissue
echogenicity, convolved with a pulse-echo point-spread function (Gaussian-modulated
carrier axially, Gaussian beam laterally), envelope detection, depth-dependent
attenuation with time-gain compensation, and log compression to a display dynamic range.
Attenuation accumulates along each beam, which yields posterior enhancement behind
fluid and acoustic shadowing behind strong reflectors without special cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Lesion classes, named after what a sonographer reports. Index = label.
LESION_CLASSES: tuple[str, ...] = (
    "none",
    "anechoic_cyst",
    "solid_wider_than_tall",
    "solid_taller_than_wide",
    "solid_spiculated",
    "hyperechoic_shadowing",
)


@dataclass(frozen=True)
class Lesion:
    """A focal lesion in image coordinates (pixels).

    Attributes:
        kind: one of :data:`LESION_CLASSES` except ``"none"``.
        cx, cy: centre.
        radius: equivalent-area radius; all classes draw it from one distribution.
        aspect: width / height before rotation.
        angle: rotation in radians.
        spikes: ``[K, 3]`` rows of (harmonic, amplitude, phase) perturbing the margin.
    """

    kind: str
    cx: float
    cy: float
    radius: float
    aspect: float
    angle: float
    spikes: np.ndarray


def lesion_inside(lesion: Lesion, x: np.ndarray, y: np.ndarray, soft: float) -> np.ndarray:
    """Soft indicator (0..1) of the lesion at image points ``x, y`` (any equal shapes)."""
    dx, dy = x - lesion.cx, y - lesion.cy
    c, s = np.cos(lesion.angle), np.sin(lesion.angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    a = lesion.radius * np.sqrt(lesion.aspect)
    b = lesion.radius / np.sqrt(lesion.aspect)
    rho = np.hypot(u / a, v / b)
    phi = np.arctan2(v / b, u / a)
    margin = np.ones_like(rho)
    for k, amp, ph in lesion.spikes:
        # |cos|^p with a high power gives sharp spicules rather than a smooth lobe
        margin = margin + amp * np.abs(np.cos(0.5 * k * phi + ph)) ** 6
    result: np.ndarray = np.clip((margin - rho) * lesion.radius / soft + 0.5, 0.0, 1.0)
    return result


def draw_lesion(
    kind: str, center: tuple[float, float], radius: float, rng: np.random.Generator
) -> Lesion:
    """Shape parameters for a lesion class; size is given so it is matched across classes."""
    aspect, angle = rng.uniform(1.0, 1.3), rng.uniform(-0.3, 0.3)
    spikes = np.zeros((0, 3), dtype=np.float32)
    if kind == "solid_wider_than_tall":
        aspect = rng.uniform(1.8, 2.4)
    elif kind == "solid_taller_than_wide":
        aspect, angle = 1.0 / rng.uniform(1.8, 2.4), rng.uniform(-0.25, 0.25)
    elif kind == "solid_spiculated":
        n = int(rng.integers(7, 12))
        spikes = np.array(
            [
                [n, rng.uniform(0.35, 0.55), rng.uniform(0, np.pi)],
                [n + 3, rng.uniform(0.15, 0.3), rng.uniform(0, np.pi)],
            ]
        )
    elif kind in ("anechoic_cyst", "hyperechoic_shadowing"):
        aspect = rng.uniform(1.0, 1.4)
    return Lesion(kind, center[0], center[1], radius, aspect, angle, spikes)


#: Relative echogenicity and attenuation (x background) inside each lesion kind.
LESION_ECHO = {
    "anechoic_cyst": 0.003,
    "solid_wider_than_tall": 0.18,
    "solid_taller_than_wide": 0.18,
    "solid_spiculated": 0.18,
    "hyperechoic_shadowing": 16.0,
}
LESION_ATTEN = {
    "anechoic_cyst": 0.05,
    "solid_wider_than_tall": 1.0,
    "solid_taller_than_wide": 1.0,
    "solid_spiculated": 1.3,
    "hyperechoic_shadowing": 3.5,
}


@dataclass(frozen=True)
class Anatomy:
    """Patient-level background tissue, in image coordinates.

    Attributes:
        layers: ``[L, 3]`` (depth fraction, echogenicity, thickness fraction) of layers
            parallel to the probe face (skin, fat, fascia, muscle).
        blobs: ``[M, 6]`` organ-like ellipses (cx, cy, a, b, angle, echogenicity).
        vessels: ``[V, 5]`` anechoic tubes (x0, y0, x1, y1, radius).
        texture: background heterogeneity amplitude.
    """

    layers: np.ndarray
    blobs: np.ndarray
    vessels: np.ndarray
    texture: float


def draw_anatomy(size: int, rng: np.random.Generator) -> Anatomy:
    """A random but plausible tissue background for one patient."""
    n_layers = int(rng.integers(2, 5))
    layers = np.stack(
        [
            np.sort(rng.uniform(0.02, 0.35, n_layers)),
            rng.uniform(0.3, 2.2, n_layers),
            rng.uniform(0.015, 0.05, n_layers),
        ],
        axis=1,
    )
    n_blobs = int(rng.integers(1, 4))
    blobs = np.stack(
        [
            rng.uniform(0.2, 0.8, n_blobs) * size,
            rng.uniform(0.35, 0.95, n_blobs) * size,
            rng.uniform(0.15, 0.35, n_blobs) * size,
            rng.uniform(0.10, 0.25, n_blobs) * size,
            rng.uniform(-0.6, 0.6, n_blobs),
            rng.uniform(0.45, 1.8, n_blobs),
        ],
        axis=1,
    )
    n_vessels = int(rng.integers(0, 3))
    vessels = np.stack(
        [
            rng.uniform(0.0, 1.0, n_vessels) * size,
            rng.uniform(0.3, 0.9, n_vessels) * size,
            rng.uniform(0.0, 1.0, n_vessels) * size,
            rng.uniform(0.3, 0.9, n_vessels) * size,
            rng.uniform(0.012, 0.03, n_vessels) * size,
        ],
        axis=1,
    )
    return Anatomy(layers, blobs, vessels, float(rng.uniform(0.1, 0.35)))


def echogenicity(
    anatomy: Anatomy, x: np.ndarray, y: np.ndarray, z_frac: np.ndarray, texture: np.ndarray
) -> np.ndarray:
    """Background scatterer strength at beam samples (image coords ``x, y``; depth ``z_frac``)."""
    echo = np.exp(anatomy.texture * texture).astype(np.float32)
    for depth, level, thick in anatomy.layers:
        echo = echo * (1.0 + (level - 1.0) * np.exp(-(((z_frac - depth) / thick) ** 2)))
    for cx, cy, a, b, ang, level in anatomy.blobs:
        c, s = np.cos(ang), np.sin(ang)
        u, v = (c * (x - cx) + s * (y - cy)) / a, (-s * (x - cx) + c * (y - cy)) / b
        inside = np.clip((1.0 - np.hypot(u, v)) * 8.0, 0.0, 1.0)
        echo = echo * (1.0 + (level - 1.0) * inside)
    for x0, y0, x1, y1, rad in anatomy.vessels:
        d = _segment_distance(x, y, x0, y0, x1, y1)
        echo = echo * (1.0 - 0.97 * np.clip((rad - d) + 0.5, 0.0, 1.0))
    return echo


def _segment_distance(
    x: np.ndarray, y: np.ndarray, x0: float, y0: float, x1: float, y1: float
) -> np.ndarray:
    vx, vy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * vx + (y - y0) * vy) / max(vx * vx + vy * vy, 1e-6), 0.0, 1.0)
    return np.hypot(x - (x0 + t * vx), y - (y0 + t * vy))


def smooth_noise(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std low-frequency field (blurred white noise)."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), scale)
    result: np.ndarray = field / (field.std() + 1e-6)
    return result


def speckle_envelope(
    echo: np.ndarray,
    rng: np.random.Generator,
    axial_sigma: float,
    lateral_sigma: float,
    cycles: float,
) -> np.ndarray:
    """Envelope of scatterers ``~ CN(0, echo)`` convolved with the pulse-echo PSF.

    Args:
        echo: ``[NZ, NX]`` mean scatterer power.
        rng: the generator that draws the scatterers.
        axial_sigma: axial PSF envelope width in beam samples.
        lateral_sigma: lateral PSF envelope width in beam samples.
        cycles: carrier cycles per axial sigma (sets the speckle's axial striation).

    Returns:
        ``[NZ, NX]`` float32 envelope (Rayleigh-distributed in homogeneous tissue).
    """
    amp = np.sqrt(echo).astype(np.float32)
    re = rng.standard_normal(echo.shape).astype(np.float32) * amp
    im = rng.standard_normal(echo.shape).astype(np.float32) * amp
    half = int(np.ceil(3 * axial_sigma))
    t = np.arange(-half, half + 1, dtype=np.float32)
    env = np.exp(-0.5 * (t / axial_sigma) ** 2)
    ka_c = (env * np.cos(2 * np.pi * cycles * t / axial_sigma)).astype(np.float32)
    ka_s = (env * np.sin(2 * np.pi * cycles * t / axial_sigma)).astype(np.float32)
    kl = cv2.getGaussianKernel(2 * int(np.ceil(3 * lateral_sigma)) + 1, lateral_sigma)
    kl = kl.astype(np.float32)

    def conv(field: np.ndarray, axial: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(field, -1, kl, axial, borderType=cv2.BORDER_REFLECT)

    # complex convolution (re + i im) * (c + i s), then the magnitude (envelope detection)
    out_re = conv(re, ka_c) - conv(im, ka_s)
    out_im = conv(re, ka_s) + conv(im, ka_c)
    result: np.ndarray = np.sqrt(out_re * out_re + out_im * out_im)
    return result


def attenuation_gain(atten: np.ndarray, alpha: float, tgc: float) -> np.ndarray:
    """Round-trip amplitude factor from attenuation accumulated along each beam (axis 0).

    Args:
        atten: ``[NZ, NX]`` local attenuation relative to background.
        alpha: background round-trip attenuation per unit depth (nepers over full depth).
        tgc: fraction of the background attenuation that time-gain compensation undoes.
    """
    nz = atten.shape[0]
    cum = np.cumsum(atten, axis=0) * (alpha / nz)
    depth = (np.arange(nz, dtype=np.float32)[:, None] + 1.0) * (alpha / nz)
    result: np.ndarray = np.exp(-cum + tgc * depth).astype(np.float32)
    return result


def log_compress(envelope: np.ndarray, dynamic_range_db: float, gain_db: float) -> np.ndarray:
    """Map an envelope to display grey levels in [0, 1] over ``dynamic_range_db``."""
    db = 20.0 * np.log10(envelope + 1e-6)
    return np.clip((db - gain_db + dynamic_range_db) / dynamic_range_db, 0.0, 1.0)
