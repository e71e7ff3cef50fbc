"""Stage-1 teacher: masked pixel reconstruction (MAE, He et al. 2022)."""

from __future__ import annotations

from typing import Any, cast

import torch.nn.functional as F
from torch import nn

from usjepa.masks.batch import MaskedBatch
from usjepa.methods.base import PretrainModule, StepResult
from usjepa.models.contracts import ContextEncoder, require
from usjepa.models.decoder import MAEDecoder, patchify
from usjepa.models.tokens import flat_rows, gather_tokens


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

    encoder: ContextEncoder

    def __init__(
        self,
        encoder: nn.Module,
        decoder: MAEDecoder,
        norm_pix_loss: bool = True,
        weight_decay: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(weight_decay=weight_decay, **kwargs)
        require(encoder, ContextEncoder, "encoder")
        self.encoder = cast(ContextEncoder, encoder)
        if decoder.grid_size != self.encoder.grid_size:
            raise ValueError(
                f"decoder grid {decoder.grid_size} != encoder grid "
                f"{self.encoder.grid_size}; set decoder.grid_size = img_size // patch_size"
            )
        self.decoder, self.norm_pix_loss = decoder, norm_pix_loss

    @property
    def trained_network(self) -> nn.Module:
        """The encoder."""
        return cast(nn.Module, self.encoder)

    def trainable_modules(self) -> list[nn.Module]:
        """The modules the optimiser updates: encoder and decoder."""
        return [cast(nn.Module, self.encoder), self.decoder]

    def step(self, batch: MaskedBatch) -> StepResult:
        """Reconstruct the pixels of the masked patches from the visible ones."""
        images, visible, masked = batch.image, batch.context, batch.targets
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
        rows = flat_rows(masked >= 0)  # the real masked patches, padding dropped
        pred = pred.flatten(0, 1).index_select(0, rows)
        target = target.flatten(0, 1).index_select(0, rows)
        return F.mse_loss(pred, target), {}, {}
