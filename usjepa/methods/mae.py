"""Stage-1 teacher: masked pixel reconstruction (MAE, He et al. 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from usjepa.methods.base import PretrainModule
from usjepa.models.decoder import MAEDecoder, patchify
from usjepa.models.encoder import ViTEncoder
from usjepa.models.tokens import Movable, TokenSet, flat_rows, gather_tokens


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

    def plan_step(self, visible: Tensor, masked: Tensor) -> MAEPlan:
        """What the step derives from the index sets alone (``visible [B, K]``, ``masked
        [B, 1, T]``), made on the host (:meth:`on_before_batch_transfer`) so that the
        device step needs no host-device synchronisation."""
        masked = masked[:, 0]
        return MAEPlan(
            self.encoder.token_set(visible),
            self.decoder.token_set(visible, masked),
            flat_rows(masked >= 0),
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Add the batch's :class:`MAEPlan` (``batch["plan"]``) while it is on the host."""
        if isinstance(batch, dict) and "context" in batch and "targets" in batch:
            if batch["targets"].ndim == 3 and batch["targets"].shape[1] == 1:
                batch.setdefault("plan", self.plan_step(batch["context"], batch["targets"]))
        return batch

    def step_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """Reconstruct the pixels of the masked patches from the visible ones. With the
        batch's ``plan`` (:meth:`plan_step`) nothing here reads device memory."""
        images, visible, masked = batch["image"], batch["context"], batch["targets"]
        if masked.shape[1] != 1:
            raise ValueError(
                f"MAEModule needs one target set per image, got {masked.shape[1]}; use "
                "RandomMaskGenerator or MultiBlockMaskGenerator(union_targets=True)"
            )
        plan: MAEPlan = batch.get("plan") or self.plan_step(visible, masked)
        masked = masked[:, 0]
        tokens = self.encoder(images, keep=visible, tokens=plan.encoder)
        tokens = tokens[:, self.encoder.num_prefix_tokens :]
        pred = self.decoder(tokens, visible, masked, tokens=plan.decoder)
        target = gather_tokens(patchify(images, self.encoder.patch_size), masked)
        if self.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        # the real masked patches, padding dropped
        pred = pred.flatten(0, 1).index_select(0, plan.rows)
        target = target.flatten(0, 1).index_select(0, plan.rows)
        return F.mse_loss(pred, target), {}


@dataclass(frozen=True)
class MAEPlan(Movable):
    """What an MAE step derives from its batch's index sets alone (see
    :meth:`MAEModule.plan_step`); Lightning moves it with the batch.

    Attributes:
        encoder: the encoder's :class:`~usjepa.models.tokens.TokenSet`.
        decoder: the decoder's.
        rows: flat positions of the real masked patches among the ``B * T``.
    """

    encoder: TokenSet
    decoder: TokenSet
    rows: Tensor
