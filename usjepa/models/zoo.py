"""Named encoders from local checkpoint files: teachers for SALT and probe baselines.

Each entry maps a checkpoint in its original key layout onto a timm module and sets the
input size, channels and normalisation the model was trained with. Nothing is
downloaded: every loader reads a file the user has. Use from YAML by name::

    teacher:
      class_path: usjepa.models.zoo.ZooEncoder
      init_args: {name: usf_mae, checkpoint: /models/usf_mae.pth, input_mean: 0.2, input_std: 0.2}

``input_mean``/``input_std`` are the normalisation of the images you feed (the corpus or
task DataModule's); the encoder undoes it and applies its own. Without them inputs are
taken as [0, 1] pixels.

Entries (see :data:`ZOO`): ``usf_mae`` (MAE ViT-B/16, encoder + decoder state dict),
``usfm`` (BEiT-style ViT-B/16), ``urfm`` (ViT-B/16, local file only),
``ijepa`` (I-JEPA ViT-H/14 target encoder), ``dinov3_vitb16`` (DINOv3 ViT-B/16, through
timm's converter), ``ultrasam`` (SAM ViT-B image encoder at 1024 px, keep-ratio resize
and pad), ``samus`` (SAMUS: SAM ViT-B with CNN branch and adapters, 256 px, in
:mod:`usjepa.models.samus`), ``echocare`` (layout unverified: a timm architecture you
name), ``timm`` (any timm architecture with a checkpoint in timm's layout) and
``usjepa`` (our own exports). The key layouts are in :mod:`usjepa.models.layouts`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from usjepa.models.checkpoint import CheckpointError, load_checked, read_state_dict
from usjepa.models.input_spec import InputSpec, letterbox_size
from usjepa.models.layouts import (
    remap_beit,
    remap_identity,
    remap_ijepa,
    remap_mae,
    remap_prefixed,
    remap_sam,
    remap_timm_filter,
)
from usjepa.models.samus import SAMUSEncoder, remap_samus
from usjepa.models.tokens import last_blocks

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
Remap = Callable[[dict[str, Tensor], nn.Module], dict[str, Tensor]]


@dataclass(frozen=True)
class ZooSpec:
    """How to build and load one named encoder.

    ``kind``: ``"vit"`` returns ``forward_features`` tokens; ``"map"`` flattens a
    ``[B, C, h, w]`` feature map. ``neck``: for SAM-style maps, whether the neck (256
    channels) is kept or the last block is read. ``resize``: ``"square"`` stretches to
    ``img_size``; ``"longest_pad"`` scales the longer side to ``img_size`` and pads the
    bottom and right with black. ``build``: a constructor instead of ``timm.create_model``.
    """

    arch: str  # timm name; "" when the user must give one, or when ``build`` is set
    kwargs: dict[str, Any]
    remap: Remap
    mean: tuple[float, ...] = IMAGENET[0]
    std: tuple[float, ...] = IMAGENET[1]
    kind: str = "vit"
    neck: bool = False
    resize: str = "square"
    in_chans: int = 3
    build: Callable[..., nn.Module] | None = None
    notes: str = ""


ZOO: dict[str, ZooSpec] = {
    "usf_mae": ZooSpec(
        "vit_base_patch16_224",
        {"img_size": 224},
        remap_mae,
        notes="MAE ViT-B/16 pretrained on OpenUS-46; probe on the CLS token or mean",
    ),
    "usfm": ZooSpec(
        "beit_base_patch16_224",
        {
            "img_size": 224,
            "use_abs_pos_emb": False,
            "use_rel_pos_bias": True,
            "init_values": 0.1,
            "global_pool": "avg",
        },
        remap_beit,
        notes="USFM: BEiT-style ViT-B/16 (relative position bias, layer scale), mean pooling "
        "+ fc_norm; ImageNet normalisation as in its training transforms (its feature "
        "extractor script standardises each image instead). The shared relative position "
        "table of its pretraining file is copied into every block",
    ),
    "urfm": ZooSpec(
        "vit_base_patch16_224",
        {"img_size": 224},
        remap_prefixed,
        notes="URFM: ViT-B/16 trained by MIM with BiomedCLIP targets; weights are not public, "
        "so the loader takes a local timm-compatible encoder under any wrapper prefix",
    ),
    "ijepa": ZooSpec(
        "vit_huge_patch14_224",
        {"img_size": 224, "class_token": False, "global_pool": "avg"},
        remap_ijepa,
        notes="I-JEPA ViT-H/14 (ImageNet-1k), no CLS token: probe on mean",
    ),
    "dinov3_vitb16": ZooSpec(
        "vit_base_patch16_dinov3",
        {"img_size": 224},
        remap_timm_filter,
        notes="DINOv3 ViT-B/16 (general domain); original keys converted by timm",
    ),
    "ultrasam": ZooSpec(
        "samvit_base_patch16",
        {"img_size": 1024},
        remap_sam,
        kind="map",
        resize="longest_pad",
        notes="UltraSam: SAM ViT-B image encoder trained on ultrasound (mmdetection file, "
        "backbone.* keys; Meta's image_encoder.* layout also loads). As in UltraSam's "
        "classification configs: longer side to 1024, black padding, SAM mean/std, and "
        "the last block's 768-channel map (no neck) for probing on its average",
    ),
    "samus": ZooSpec(
        "",
        {"img_size": 256},
        remap_samus,
        mean=(0.0,),
        std=(1.0,),
        kind="map",
        in_chans=1,
        build=SAMUSEncoder,
        notes="SAMUS: SAM ViT-B with a CNN branch and adapters, 256 px, patch 8, grey "
        "[0, 1] input; without the neck the fused 768-channel map is read",
    ),
    "echocare": ZooSpec(
        "",
        {},
        remap_prefixed,
        notes="EchoCare: its encoder layout is not verified here; give the timm "
        "architecture that matches the file (arch=...); wrapper prefixes and heads are "
        "stripped and any key left over is reported",
    ),
    "timm": ZooSpec("", {}, remap_identity, notes="any timm architecture, timm key layout"),
}


class ZooEncoder(nn.Module):
    """A named encoder from a local checkpoint, returning ``[B, prefix + N, D]`` tokens.

    Args:
        name: a :data:`ZOO` entry, or ``usjepa`` for our own export (``checkpoint`` is the
            ``.safetensors`` beside its ``.json``).
        checkpoint: the local weights file; ``None`` builds the architecture with random
            weights (for tests and shape checks).
        arch: the timm architecture for ``name: timm`` and ``name: echocare``.
        arch_overrides: keyword arguments that replace the entry's (size, depth ...).
        input_mean, input_std: normalisation of the images this encoder will be fed; it
            is undone before the model's own normalisation. ``None``: [0, 1] pixels.
        neck: SAM-style entries: read the neck's map (``True``) or the last block's
            (``False``); ``None`` takes the entry's default.
    """

    input_spec: InputSpec | None = None  # our exports' contract (the usjepa entry)

    def __init__(
        self,
        name: str,
        checkpoint: str | None = None,
        arch: str | None = None,
        arch_overrides: dict[str, Any] | None = None,
        input_mean: float | None = None,
        input_std: float | None = None,
        neck: bool | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.model: Any
        self.mean: Tensor
        self.std: Tensor
        self.resize = "square"
        if name == "usjepa":
            self._init_usjepa(checkpoint, input_mean, input_std)
            return
        if name not in ZOO:
            raise ValueError(f"unknown zoo entry {name!r}; known: {sorted(ZOO)} and 'usjepa'")
        spec = ZOO[name]
        if spec.build is not None and arch:
            raise ValueError(f"zoo entry {name!r} builds its own model; it takes no arch=")
        arch = arch or spec.arch
        if spec.build is None and not arch:
            raise ValueError(f"zoo entry {name!r} needs arch=<timm model name>")
        self.kind, self.resize = spec.kind, spec.resize
        use_neck = spec.neck if neck is None else neck
        if spec.build is not None:
            kwargs = {**spec.kwargs, **(arch_overrides or {})}
            self.model = spec.build(**kwargs, neck=use_neck)
            self.img_size, self.grid_size = self.model.img_size, self.model.grid
            self.in_chans, self.embed_dim = spec.in_chans, self.model.out_dim
        else:
            kwargs = {**spec.kwargs, "num_classes": 0, **(arch_overrides or {})}
            self.model = timm.create_model(arch, pretrained=False, **kwargs)
            self.in_chans = int(kwargs.get("in_chans", spec.in_chans))
            grid = self.model.patch_embed.grid_size
            patch = self.model.patch_embed.patch_size
            self.img_size = int(grid[0] * (patch[0] if isinstance(patch, tuple) else patch))
            self.grid_size = int(grid[0])
            self.embed_dim = int(self.model.embed_dim)
            if spec.kind == "map" and use_neck:
                self.embed_dim = int(self.model.neck[0].out_channels)
            elif spec.kind == "map":
                self.model.neck = nn.Identity()
        self.num_prefix_tokens = (
            0 if spec.kind == "map" else int(getattr(self.model, "num_prefix_tokens", 1))
        )
        mean, std = spec.mean, spec.std
        if name == "timm":  # the architecture's own pretrained normalisation
            cfg = getattr(self.model, "pretrained_cfg", {}) or {}
            mean, std = cfg.get("mean", mean), cfg.get("std", std)
        self._set_norm(mean, std, input_mean, input_std)
        if checkpoint is not None:
            state = read_state_dict(Path(checkpoint))
            load_checked(
                self.model, spec.remap(state, self.model), f"{name} checkpoint {checkpoint}"
            )

    def _init_usjepa(
        self, checkpoint: str | None, input_mean: float | None, input_std: float | None
    ) -> None:
        from usjepa.models.export import load_exported

        if checkpoint is None:
            raise CheckpointError("zoo entry 'usjepa' needs checkpoint=<export>.safetensors")
        encoder = load_exported(checkpoint)
        self.model, self.kind = encoder.vit, "vit"
        self.in_chans, self.img_size = encoder.in_chans, encoder.img_size
        self.embed_dim, self.num_prefix_tokens = encoder.embed_dim, encoder.num_prefix_tokens
        self.grid_size = encoder.grid_size
        self.input_spec = encoder.input_spec
        mean: tuple[float, ...] = (0.0,)
        std: tuple[float, ...] = (1.0,)
        if self.input_spec is not None:
            mean, std = self.input_spec.mean, self.input_spec.std
        self._set_norm(mean, std, input_mean, input_std)

    def _set_norm(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        input_mean: float | None,
        input_std: float | None,
    ) -> None:
        chans = self.in_chans
        mean_t = torch.tensor(list(mean) * (chans if len(mean) == 1 else 1), dtype=torch.float32)
        std_t = torch.tensor(list(std) * (chans if len(std) == 1 else 1), dtype=torch.float32)
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)
        self.input_mean = 0.0 if input_mean is None else float(input_mean)
        self.input_std = 1.0 if input_std is None else float(input_std)
        self.input_stats_fixed = input_mean is not None or input_std is not None

    def adopt_input_stats(self, mean: float, std: float) -> None:
        """Undo the statistics our images were standardised with (the corpus's, measured
        by the DataModule), unless ``input_mean``/``input_std`` were given explicitly."""
        if not self.input_stats_fixed:
            self.input_mean, self.input_std = float(mean), float(std)

    def prepare(self, images: Tensor) -> Tensor:
        """Our normalised images to the model's input: size, channels, normalisation.

        Images that already meet the encoder's input contract (its size, channels and
        statistics, as the probe feeds an export) pass through untouched, bit for bit."""
        spec = self.input_spec
        if (
            spec is not None
            and images.shape[-1] == spec.img_size
            and images.shape[1] == spec.in_chans
            and (self.input_mean, self.input_std) == spec.scalar_stats
        ):
            return images
        pixels = images * self.input_std + self.input_mean
        h, w = pixels.shape[-2:]
        size = self.img_size
        if self.resize == "longest_pad":
            new = letterbox_size(h, w, size)
            if new != (h, w):
                pixels = F.interpolate(pixels, size=new, mode="bilinear", align_corners=False)
            if new != (size, size):  # black (zero) pixels, normalised below like the image
                pixels = F.pad(pixels, (0, size - new[1], 0, size - new[0]))
        elif (h, w) != (size, size):
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
        if pixels.shape[1] != self.in_chans:
            pixels = pixels.mean(1, keepdim=True).expand(-1, self.in_chans, -1, -1)
        return (pixels - self.mean) / self.std

    def forward_blocks(self, images: Tensor, n_last: int) -> list[Tensor]:
        """Normalised tokens of the last ``n_last`` blocks (ViT entries; timm's
        ``forward_intermediates``), for ``teacher_layers`` and ``*_last<n>`` poolings."""
        if self.kind == "map":
            raise ValueError(f"zoo entry {self.name!r} gives a feature map, not ViT blocks")
        return last_blocks(self.model, self.prepare(images), n_last, self.num_prefix_tokens)

    def forward(self, images: Tensor) -> Tensor:
        """Tokens ``[B, P + N, D]`` of images given in our normalisation."""
        x = self.model.forward_features(self.prepare(images))
        if self.kind == "map":  # [B, C, h, w] feature map -> [B, h*w, C]
            x = x.flatten(2).transpose(1, 2)
        result: Tensor = x
        return result
