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
timm's converter), ``ultrasam`` (SAM ViT-B image encoder at 1024 px), ``timm`` (any timm
architecture with a checkpoint in timm's layout) and ``usjepa`` (our own exports).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from usjepa.models.export import CheckpointError, load_checked, read_state_dict

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
Remap = Callable[[dict[str, Tensor], nn.Module], dict[str, Tensor]]


def _unwrap(state: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Tensor]:
    """The first nested state dict found under ``keys`` (checkpoints wrap them)."""
    for key in keys:
        if key in state and isinstance(state[key], dict):
            return state[key]
    return state


def _strip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def remap_mae(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """MAE (USF-MAE) checkpoint: ``{"model": {encoder keys..., decoder_*, mask_token}}``;
    the encoder's keys are timm's, the decoder is dropped."""
    state = _strip(_unwrap(state, ("model", "state_dict")), "module.")
    return {k: v for k, v in state.items() if not k.startswith(("decoder", "mask_token"))}


def remap_ijepa(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """I-JEPA checkpoint: ``{"target_encoder": {"module.<timm keys>"}, "encoder": ...,
    "predictor": ...}``; the target encoder is the one evaluated. No CLS token."""
    return _strip(_unwrap(state, ("target_encoder", "encoder")), "module.")


def remap_sam(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """SAM-style checkpoint (UltraSam): ``image_encoder.*`` keys, which timm's ``samvit``
    mirrors; the prompt encoder and mask decoder are dropped."""
    state = _strip(_unwrap(state, ("state_dict", "model")), "module.")
    return {
        k[len("image_encoder.") :]: v for k, v in state.items() if k.startswith("image_encoder.")
    }


_DROP = ("decoder", "mask_token", "lm_head", "head.", "fc_norm_head", "predictor")


def remap_prefixed(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """A timm-compatible encoder saved under a wrapper prefix (``model.``, ``module.``,
    ``backbone.``, ``encoder.``) next to heads or decoders, which are dropped; buffers the
    model recomputes (``relative_position_index``) are dropped too."""
    state = _unwrap(state, ("model", "state_dict", "module"))
    own = model.state_dict()
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "model.", "backbone.", "encoder."):
            if key.startswith(prefix) and key[len(prefix) :] in own:
                key = key[len(prefix) :]
        if key.startswith(_DROP) or key.endswith("relative_position_index"):
            continue
        out[key] = value
    return out


def remap_timm_filter(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """Original layouts that timm converts itself (DINOv3 via ``eva.checkpoint_filter_fn``)."""
    from timm.models.eva import checkpoint_filter_fn

    state = _unwrap(state, ("model", "teacher", "state_dict"))
    state = {re.sub(r"^backbone\.", "", k): v for k, v in state.items()}
    return checkpoint_filter_fn(state, model)


def remap_identity(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    return _unwrap(state, ("state_dict", "model"))


@dataclass(frozen=True)
class ZooSpec:
    """How to build and load one named encoder."""

    arch: str
    kwargs: dict[str, Any]
    remap: Remap
    mean: tuple[float, ...] = IMAGENET[0]
    std: tuple[float, ...] = IMAGENET[1]
    kind: str = "vit"  # "vit": tokens from forward_features; "sam": neck feature map
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


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
        remap_prefixed,
        notes="USFM: BEiT-style ViT-B/16 (relative position bias, layer scale), mean pooling "
        "+ fc_norm; ImageNet normalisation. The released file's wrapper prefix is stripped",
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
        kind="sam",
        notes="SAM ViT-B image encoder fine-tuned on ultrasound; probe on the mean of its "
        "feature map; square resize (SAM pads to keep the aspect ratio)",
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
        arch: the timm architecture for ``name: timm``.
        arch_overrides: timm keyword arguments that replace the entry's (size, depth ...).
        input_mean, input_std: normalisation of the images this encoder will be fed; it
            is undone before the model's own normalisation. ``None``: [0, 1] pixels.
    """

    def __init__(
        self,
        name: str,
        checkpoint: str | None = None,
        arch: str | None = None,
        arch_overrides: dict[str, Any] | None = None,
        input_mean: float | None = None,
        input_std: float | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.model: Any
        self.mean: Tensor
        self.std: Tensor
        if name == "usjepa":
            self._init_usjepa(checkpoint, input_mean, input_std)
            return
        if name not in ZOO:
            raise ValueError(f"unknown zoo entry {name!r}; known: {sorted(ZOO)} and 'usjepa'")
        spec = ZOO[name]
        arch = arch or spec.arch
        if not arch:
            raise ValueError("zoo entry 'timm' needs arch=<timm model name>")
        kwargs = {**spec.kwargs, "num_classes": 0, **(arch_overrides or {})}
        self.model = timm.create_model(arch, pretrained=False, **kwargs)
        self.kind = spec.kind
        self.in_chans = int(kwargs.get("in_chans", 3))
        grid = self.model.patch_embed.grid_size
        patch = self.model.patch_embed.patch_size
        self.img_size = int(grid[0] * (patch[0] if isinstance(patch, tuple) else patch))
        self.grid_size = int(grid[0])
        mean, std = spec.mean, spec.std
        if name == "timm":  # the architecture's own pretrained normalisation
            cfg = getattr(self.model, "pretrained_cfg", {}) or {}
            mean, std = cfg.get("mean", mean), cfg.get("std", std)
        self._set_norm(mean, std, input_mean, input_std)
        if spec.kind == "sam":
            self.embed_dim = int(self.model.neck[0].out_channels)
            self.num_prefix_tokens = 0
        else:
            self.embed_dim = int(self.model.embed_dim)
            self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 1))
        if checkpoint is not None:
            state = read_state_dict(Path(checkpoint))
            load_checked(
                self.model, spec.remap(state, self.model), f"{name} checkpoint {checkpoint}"
            )

    def _init_usjepa(self, checkpoint: str | None, input_mean, input_std) -> None:  # noqa: ANN001
        from usjepa.models.export import load_exported

        if checkpoint is None:
            raise CheckpointError("zoo entry 'usjepa' needs checkpoint=<export>.safetensors")
        encoder = load_exported(checkpoint)
        self.model, self.kind = encoder.vit, "vit"
        self.in_chans, self.img_size = encoder.in_chans, encoder.img_size
        self.embed_dim, self.num_prefix_tokens = encoder.embed_dim, encoder.num_prefix_tokens
        self.grid_size = encoder.grid_size
        cfg = json.loads(Path(checkpoint).with_suffix(".json").read_text())
        norm = cfg.get("input_normalisation") or {}
        mean, std = norm.get("mean") or 0.0, norm.get("std") or 1.0
        self._set_norm((mean,), (std,), input_mean, input_std)

    def _set_norm(self, mean, std, input_mean, input_std) -> None:  # noqa: ANN001
        chans = self.in_chans
        mean = torch.tensor(list(mean) * (chans if len(mean) == 1 else 1), dtype=torch.float32)
        std = torch.tensor(list(std) * (chans if len(std) == 1 else 1), dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)
        self.input_mean = 0.0 if input_mean is None else float(input_mean)
        self.input_std = 1.0 if input_std is None else float(input_std)

    def prepare(self, images: Tensor) -> Tensor:
        """Our normalised images to the model's input: size, channels, normalisation."""
        pixels = images * self.input_std + self.input_mean
        if pixels.shape[-1] != self.img_size or pixels.shape[-2] != self.img_size:
            size = (self.img_size, self.img_size)
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
        if pixels.shape[1] != self.in_chans:
            pixels = pixels.mean(1, keepdim=True).expand(-1, self.in_chans, -1, -1)
        return (pixels - self.mean) / self.std

    def forward(self, images: Tensor) -> Tensor:
        x = self.model.forward_features(self.prepare(images))
        if self.kind == "sam":  # [B, C, h, w] neck features -> [B, h*w, C]
            x = x.flatten(2).transpose(1, 2)
        return x
