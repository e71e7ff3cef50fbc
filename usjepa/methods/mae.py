"""Stage-1 teacher: masked pixel reconstruction (MAE, He et al. 2022)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from usjepa.methods.base import PretrainModule
from usjepa.models.decoder import MAEDecoder, patchify
from usjepa.models.encoder import ViTEncoder
from usjepa.models.tokens import gather_tokens


class MAEModule(PretrainModule):
    """Trains an encoder to reconstruct masked patches; the SALT recipe's teacher stage.

    Batches come from the corpus DataModule: ``context`` are the visible patches and the
    union of ``targets`` the masked ones. A :class:`~usjepa.masks.RandomMaskGenerator`
    gives MAE's random masks; a :class:`~usjepa.masks.MultiBlockMaskGenerator` with
    ``union_targets=True`` gives SALT's stage-1 multi-block masks. Padded slots (``-1``)
    are kept out of attention and out of the loss.

    Args:
        encoder: the ViT to pretrain (exported afterwards as the frozen teacher).
        decoder: pixel decoder.
        norm_pix_loss: regress per-patch normalised pixels (MAE's better variant).
        weight_decay: MAE's 0.05 (the JEPA methods default to 0.04).
        **kwargs: ``optimizer`` and ``scheduler``, see
            :class:`~usjepa.methods.base.PretrainModule`.
    """

    def __init__(
        self,
        encoder: ViTEncoder,
        decoder: MAEDecoder,
        norm_pix_loss: bool = True,
        weight_decay: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(weight_decay=weight_decay, **kwargs)
        if decoder.grid_size != encoder.grid_size:
            raise ValueError(
                f"decoder grid {decoder.grid_size} != encoder grid "
                f"{encoder.grid_size}; set decoder.grid_size = img_size // patch_size"
            )
        self.encoder, self.decoder, self.norm_pix_loss = encoder, decoder, norm_pix_loss

    def trainable_modules(self) -> list[nn.Module]:
        """The modules the optimiser updates: encoder and decoder."""
        return [self.encoder, self.decoder]

    def step_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Reconstruct the pixels of the masked patches from the visible ones."""
        images, visible, masked = batch["image"], batch["context"], batch["targets"]
        if masked.shape[1] != 1:
            raise ValueError(
                f"MAEModule needs one target set per image, got {masked.shape[1]}; use "
                "RandomMaskGenerator or MultiBlockMaskGenerator(union_targets=True)"
            )
        masked = masked[:, 0]
        tokens = self.encoder(images, keep=visible)[:, self.encoder.num_prefix_tokens :]
        pred = self.decoder(tokens, visible, masked)
        target = gather_tokens(patchify(images, self.encoder.patch_size), masked)
        if self.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        valid = masked >= 0
        return F.mse_loss(pred[valid], target[valid]), {}
