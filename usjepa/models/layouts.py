"""Checkpoint key layouts of published encoders, mapped onto timm (or our) modules.

Each ``remap_*(state, model)`` takes what :func:`usjepa.models.checkpoint.read_state_dict`
read from the original file and returns a state dict for ``model``; the zoo then loads
it strictly, so anything left over or missing is reported by name. Layouts timm
converts itself go through timm's own filter functions (SAM, BEiT, EVA/DINOv3); what
remains here is what timm does not know (mmpretrain's SAM, USFM's shared bias table,
wrapper prefixes, dropped decoders).
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor, nn


def unwrap(state: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Tensor]:
    """The first nested state dict found under ``keys`` (checkpoints wrap them)."""
    for key in keys:
        if key in state and isinstance(state[key], dict):
            result: dict[str, Tensor] = state[key]
            return result
    return state


def strip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def remap_mae(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """MAE (USF-MAE) checkpoint: ``{"model": {encoder keys..., decoder_*, mask_token}}``;
    the encoder's keys are timm's, the decoder is dropped."""
    state = strip(unwrap(state, ("model", "state_dict")), "module.")
    return {k: v for k, v in state.items() if not k.startswith(("decoder", "mask_token"))}


def remap_ijepa(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """I-JEPA checkpoint: ``{"target_encoder": {"module.<timm keys>"}, "encoder": ...,
    "predictor": ...}``; the target encoder is the one evaluated. No CLS token."""
    return strip(unwrap(state, ("target_encoder", "encoder")), "module.")


# mmpretrain's ViTSAM (UltraSam is trained with mmdetection on it) -> timm's samvit
_MMPRETRAIN_SAM = (
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^layers\.(\d+)\.ln1\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.ln2\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.ffn\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^layers\.(\d+)\.ffn\.layers\.1\.", r"blocks.\1.mlp.fc2."),
    (r"^layers\.(\d+)\.", r"blocks.\1."),
    (r"^channel_reduction\.", "neck."),
)


def remap_sam(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """A SAM image encoder in either published layout, onto timm's ``samvit``:

    - Meta's SAM (and fine-tunes such as MedSAM): ``image_encoder.*`` with ``mlp.lin1/2``;
    - mmdetection / mmpretrain (UltraSam's ``UltraSam.pth``): ``state_dict`` ->
      ``backbone.*`` with ``layers.N.ln1``, ``ffn.layers.0.0`` and ``channel_reduction``.

    Prompt encoder, mask decoder and heads are dropped; so is the neck when the model
    was built without one (UltraSam's probes read the last block, not the neck).
    """
    from timm.models.vision_transformer_sam import checkpoint_filter_fn

    state = strip(unwrap(state, ("state_dict", "model")), "module.")
    out: dict[str, Tensor] = {}
    if any(k.startswith("image_encoder.") for k in state):  # Meta's layout: timm converts it
        out = checkpoint_filter_fn(state, model)
    else:
        for key, value in state.items():
            if not key.startswith("backbone."):
                continue
            key = key.removeprefix("backbone.")
            for pattern, repl in _MMPRETRAIN_SAM:
                key = re.sub(pattern, repl, key)
            out[key] = value
    if not any(k.startswith("neck.") for k in model.state_dict()):
        out = {k: v for k, v in out.items() if not k.startswith("neck.")}
    return out


_DROP = ("decoder", "mask_token", "lm_head", "head.", "fc_norm_head", "predictor")
_PREFIXES = ("module.", "model.", "backbone.", "encoder.")


def remap_prefixed(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """A timm-compatible encoder saved under a wrapper prefix (``model.``, ``module.``,
    ``backbone.``, ``encoder.``) next to heads or decoders, which are dropped; buffers the
    model recomputes (``relative_position_index``) are dropped too."""
    state = unwrap(state, ("model", "state_dict", "module"))
    own = model.state_dict()
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix) and key[len(prefix) :] in own:
                key = key[len(prefix) :]
        if key.startswith(_DROP) or key.endswith("relative_position_index"):
            continue
        out[key] = value
    return out


def remap_beit(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """A BEiT-style checkpoint (USFM) onto timm's ``beit``.

    USFM's pretraining file holds one relative position bias table shared by all blocks
    (``rel_pos_bias.relative_position_bias_table``); USFM copies it into every block
    when it builds its ViT, and so does this. Its final ``norm`` belongs to the
    pretraining model: under mean pooling USFM replaces it with a freshly initialised
    ``fc_norm``, so ``norm`` is dropped and ``fc_norm`` keeps its initial values when
    the file has none. (Neither is applied to the tokens the zoo returns.)
    """
    from timm.models.beit import checkpoint_filter_fn

    out = remap_prefixed(state, model)
    own = model.state_dict()
    shared = out.pop("rel_pos_bias.relative_position_bias_table", None)
    if shared is not None:
        for key in own:
            if key.endswith("attn.relative_position_bias_table") and key not in out:
                out[key] = shared.clone()
    if "fc_norm.weight" in own and "norm.weight" not in own:
        for part in ("weight", "bias"):
            out.pop(f"norm.{part}", None)
            out.setdefault(f"fc_norm.{part}", own[f"fc_norm.{part}"])
    # timm's BEiT filter: drops recomputed buffers, resizes position and bias tables
    return checkpoint_filter_fn(out, model)


def remap_timm_filter(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """Original layouts that timm converts itself (DINOv3 via ``eva.checkpoint_filter_fn``)."""
    from timm.models.eva import checkpoint_filter_fn

    state = unwrap(state, ("model", "teacher", "state_dict"))
    state = {re.sub(r"^backbone\.", "", k): v for k, v in state.items()}
    return checkpoint_filter_fn(state, model)


def remap_identity(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """``state`` as is, for checkpoints already in the model's layout."""
    return unwrap(state, ("state_dict", "model"))
