"""What an encoder expects as input: one object that travels with every export.

An encoder trained on standardised pixels only works when fed pixels standardised the
same way. :class:`InputSpec` records it once: the input side, the channels, the mean and
std of [0, 1] pixels, where those statistics came from, and how a frame is brought to
size. The export callback writes it into the export's JSON; the probe, the zoo's
``usjepa`` entry and a SALT teacher read it back, so no number is repeated by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

StatsOrigin = Literal["scan_region", "whole_image", "fixed"]
Resize = Literal["square", "longest_pad"]


@dataclass(frozen=True)
class InputSpec:
    """The input contract of an encoder.

    Attributes:
        img_size: square input side in pixels.
        in_chans: channels (1 for grayscale B-mode).
        mean, std: normalisation of [0, 1] pixels, ``(x - mean) / std``, per channel or
            one value for all.
        stats: where ``mean``/``std`` came from: ``scan_region`` (measured inside the
            scan regions of the pretraining corpus), ``whole_image``, or ``fixed``
            (published constants, e.g. ImageNet's).
        resize: ``square`` (stretched, area interpolation when shrinking, linear when
            enlarging) or ``longest_pad`` (longer side to ``img_size``, black padding).
    """

    img_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    stats: StatsOrigin = "scan_region"
    resize: Resize = "square"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSpec:
        """Read :meth:`to_json`'s output back."""
        mean, std = data["mean"], data["std"]
        return cls(
            img_size=int(data["img_size"]),
            in_chans=int(data["in_chans"]),
            mean=tuple(float(m) for m in (mean if isinstance(mean, list) else [mean])),
            std=tuple(float(s) for s in (std if isinstance(std, list) else [std])),
            stats=data.get("stats", "scan_region"),
            resize=data.get("resize", "square"),
        )

    @property
    def scalar_stats(self) -> tuple[float, float]:
        """``(mean, std)`` as single values (grayscale inputs share one per channel)."""
        if len(set(self.mean)) != 1 or len(set(self.std)) != 1:
            raise ValueError(f"per-channel statistics {self.mean}/{self.std} are not scalar")
        return self.mean[0], self.std[0]


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(h, w)`` of an image scaled so its longer side is ``size``, aspect kept (the
    ``longest_pad`` resize; the rest of the ``size x size`` input is black padding
    below and to the right). The one letterbox geometry of task images and zoo inputs."""
    scale = size / max(height, width)
    return min(size, round(height * scale)), min(size, round(width * scale))
