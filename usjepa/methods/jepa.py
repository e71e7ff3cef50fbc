"""JEPA base module and SALT (frozen static teacher)."""

from __future__ import annotations

import abc
import math
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from usjepa.losses import LossKind, latent_loss
from usjepa.masks.batch import MaskedBatch
from usjepa.methods.base import PretrainModule, StepResult
from usjepa.models.contracts import ContextEncoder, Predictor, TokenEncoder, require
from usjepa.models.tokens import Checkpointing, checkpointing_mode, flat_rows, gather_tokens

TargetNorm = Literal["layer", "layer_batch", "none"]


class JEPAModule(PretrainModule):
    """Joint-embedding predictive training: targets -> predictions -> loss.

    Each step reads like the paper and each part is a hook a subclass may override:
    :meth:`compute_targets` (what to predict), :meth:`predict` (the student and
    predictor), :meth:`compute_loss`. Batches come from the corpus DataModule with masks
    drawn by its collator: ``image [B, C, H, W]``, ``context [B, K]``, ``targets [B, M, T]``.
    Index sets are right-padded with ``-1`` (each image keeps its own draw); padded
    target slots are dropped before :meth:`compute_loss`, which therefore sees
    ``[N, D]`` rows of valid predictions and targets.

    Args:
        student: context encoder, any ``nn.Module`` meeting
            :class:`~usjepa.models.contracts.ContextEncoder`.
        predictor: narrow predictor meeting :class:`~usjepa.models.contracts.Predictor`;
            its ``out_dim`` must equal the target width.
        loss: latent regression loss: a name (``smooth_l1``, ``l1``, ``mse``) or any
            ``nn.Module`` taking ``(predictions [N, D], targets [N, D])`` to a scalar.
        target_norm: ``layer`` layer-normalises each target token (I-JEPA); ``layer_batch``
            then standardises every channel over the batch's target tokens, so a teacher
            whose tokens share a large common component still gives targets that vary
            (useful with weak, briefly trained teachers); ``none``.
        activation_checkpointing: recompute student and predictor blocks in the backward
            pass instead of keeping their activations (``torch.utils.checkpoint``).
            ``full`` (or ``true``) keeps only each block's input: the step's memory falls
            most and its compute rises by about one student and predictor forward.
            ``selective`` keeps the outputs of the matmuls and of attention and recomputes
            the pointwise work (PyTorch's selective activation checkpointing): no matmul
            runs twice. The losses are unchanged.
        compile_blocks: compile every timm ``Block`` of the student and the predictor with
            ``torch.compile`` (in place, so checkpoints keep their keys; dynamic shapes,
            since the number of context and target tokens changes from batch to batch).
            Meant for GPUs.
        **kwargs: ``optimizer``, ``scheduler`` and ``weight_decay``, see
            :class:`~usjepa.methods.base.PretrainModule`.
    """

    student: ContextEncoder
    predictor: Predictor

    def __init__(
        self,
        student: nn.Module,
        predictor: nn.Module,
        loss: LossKind | nn.Module = "smooth_l1",
        target_norm: TargetNorm = "layer",
        activation_checkpointing: bool | Checkpointing = False,
        compile_blocks: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        require(student, ContextEncoder, "student")
        require(predictor, Predictor, "predictor")
        student_ = cast(ContextEncoder, student)
        predictor_ = cast(Predictor, predictor)
        if predictor_.grid_size != student_.grid_size or predictor_.in_dim != student_.embed_dim:
            raise ValueError(
                f"predictor (grid {predictor_.grid_size}, in_dim {predictor_.in_dim}) does not "
                f"fit the student (grid {student_.grid_size}, width {student_.embed_dim}); set "
                "predictor.grid_size = img_size // patch_size and in_dim = embed_dim"
            )
        self.student, self.predictor = student_, predictor_
        mode = checkpointing_mode(activation_checkpointing)
        for name, network in (("student", student), ("predictor", predictor)):
            if hasattr(network, "grad_checkpointing"):
                setattr(network, "grad_checkpointing", mode)  # noqa: B010 (any network type)
            elif mode != "none":
                raise ValueError(
                    f"activation_checkpointing={mode!r}, but the {name} "
                    f"({type(network).__name__}) has no grad_checkpointing attribute"
                )
        if compile_blocks:
            for network in (student, predictor):
                for block in network.modules():
                    if isinstance(block, Block):
                        block.compile(dynamic=True)
        if target_norm not in ("layer", "layer_batch", "none"):
            raise ValueError(f"target_norm={target_norm!r}; choose layer, layer_batch or none")
        self.target_norm = target_norm
        self.loss_fn = latent_loss(loss)

    @property
    def trained_network(self) -> nn.Module:
        """The student."""
        return cast(nn.Module, self.student)

    def trainable_modules(self) -> list[nn.Module]:
        """The modules the optimiser updates: student and predictor."""
        return [cast(nn.Module, self.student), cast(nn.Module, self.predictor)]

    @abc.abstractmethod
    def compute_targets(self, images: Tensor, targets: Tensor) -> Tensor:
        """Target embeddings ``[B, M, T, D_t]`` at patch indices ``targets [B, M, T]``."""

    def encode_context(self, images: Tensor, context: Tensor) -> Tensor:
        """The student's patch tokens ``[B, K, D]`` at ``context [B, K]`` (no prefix)."""
        return self.student(images, keep=context)[:, self.student.num_prefix_tokens :]

    def predict(self, tokens: Tensor, context: Tensor, targets: Tensor) -> Tensor:
        """Predictions ``[B, M, T, D_t]`` at ``targets [B, M, T]`` from the student's
        context tokens ``[B, K, D]`` at ``context [B, K]``."""
        return self.predictor(tokens, context, targets)

    def compute_loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        """Regression loss between equal-shaped predictions and targets (``[N, D]``)."""
        loss: Tensor = self.loss_fn(predictions, targets)
        return loss

    def step(self, batch: MaskedBatch) -> StepResult:
        """Predict the target tokens of the masked blocks from the context: targets ->
        context tokens -> predictions -> loss. Outputs: the student's context tokens
        (``student [B, K, D]`` with ``context``), and the predictions and targets of the
        real target slots (``[N, D_t]`` each), detached."""
        images, context, target_idx = batch.image, batch.context, batch.targets
        targets = self.compute_targets(images, target_idx)
        tokens = self.encode_context(images, context)
        predictions = self.predict(tokens, context, target_idx)
        rows = flat_rows(target_idx >= 0)  # [N]: the real target slots, padding dropped
        predictions = predictions.flatten(0, -2).index_select(0, rows)
        targets = targets.flatten(0, -2).index_select(0, rows)
        loss = self.compute_loss(predictions, targets)
        # a collapsing predictor shows as prediction spread falling towards zero
        extras = {
            "pred_std": predictions.detach().float().std(dim=0).mean(),
            "target_std": targets.float().std(dim=0).mean(),
        }
        outputs = {
            "student": tokens.detach(),
            "context": context,
            "predictions": predictions.detach(),
            "targets": targets.detach(),
        }
        return loss, extras, outputs

    def _target_tokens(
        self, encoder: nn.Module, images: Tensor, targets: Tensor, layers: int = 1
    ) -> Tensor:
        tokens = encoder_tokens(encoder, images, layers)
        tokens = resample_tokens(tokens, self.student.grid_size)
        if self.target_norm != "none":
            tokens = F.layer_norm(tokens, tokens.shape[-1:])
        picked = gather_tokens(tokens, targets)
        if self.target_norm == "layer_batch":  # statistics over real targets, not padding
            real = (targets >= 0).unsqueeze(-1).to(picked.dtype)  # [B, M, T, 1]
            count = real.sum()
            mean = (picked * real).sum((0, 1, 2)) / count
            std = (((picked - mean) ** 2 * real).sum((0, 1, 2)) / (count - 1)).sqrt()
            picked = (picked - mean) / (std + 1e-6)
        return picked


def encoder_tokens(encoder: nn.Module, images: Tensor, layers: int = 1) -> Tensor:
    """Patch tokens ``[B, N, D]`` of ``encoder``: its last block's, or the mean of its last
    ``layers`` blocks' (the encoder needs ``forward_blocks``). Images are resized to the
    encoder's ``img_size`` and repeated to its ``in_chans`` when they differ."""
    size = getattr(encoder, "img_size", images.shape[-1])
    if size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    chans = getattr(encoder, "in_chans", images.shape[1])
    if chans != images.shape[1]:
        if images.shape[1] != 1:
            raise ValueError(
                f"cannot feed {images.shape[1]}-channel images to a {chans}-channel encoder"
            )
        images = images.expand(-1, chans, -1, -1)
    prefix = encoder.num_prefix_tokens
    if layers == 1:
        result: Tensor = encoder(images)[:, prefix:]
        return result
    if not hasattr(encoder, "forward_blocks"):
        raise ValueError(
            f"{type(encoder).__name__} has no forward_blocks; teacher_layers > 1 needs it"
        )
    outs = encoder.forward_blocks(images, layers)  # type: ignore[operator]
    return torch.stack(outs).mean(0)[:, prefix:]


def resample_tokens(tokens: Tensor, grid: int) -> Tensor:
    """Tokens on a square ``g x g`` grid resampled (bilinear) to ``grid x grid``, so a
    teacher with another patch size or resolution gives targets on the student's grid."""
    n = tokens.shape[1]
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"{n} tokens do not form a square grid")
    if g == grid:
        return tokens
    x = tokens.transpose(1, 2).reshape(len(tokens), -1, g, g)
    x = F.interpolate(x.float(), size=(grid, grid), mode="bilinear", align_corners=False)
    return x.flatten(2).transpose(1, 2).to(tokens.dtype)


class SALTModule(JEPAModule):
    """SALT: the student regresses a frozen, static teacher's patch embeddings.

    Static-teacher Asymmetric Latent Training (arXiv 2509.24317), the objective of
    US-JEPA (arXiv 2602.19322). The teacher sees the full image, is frozen
    (``requires_grad_(False)``, eval mode re-asserted every epoch, not in the optimiser)
    and needs no EMA, so teacher and student training are decoupled.

    Args:
        teacher: frozen encoder returning ``[B, prefix + N_t, D_t]`` tokens, with
            ``num_prefix_tokens`` and ``embed_dim`` attributes. Its width may differ from
            the student's (the predictor projects to it); a teacher with another input
            size or patch grid gets resized images and has its tokens resampled to the
            student's grid; a 3-channel teacher gets the grayscale image repeated.
        teacher_layers: targets are the mean of the teacher's last ``teacher_layers``
            block outputs (1: the last block).
        teacher_dtype: ``bfloat16`` keeps the frozen teacher's weights in bf16 and runs
            it in bf16 (half its memory, and faster on GPUs and on CPUs with AVX512-BF16);
            its targets come back as float32.
            ``null`` (default) leaves the teacher as loaded. Either way the teacher runs
            under ``torch.inference_mode``.
        **kwargs: ``loss``, ``target_norm``, ``activation_checkpointing``,
            ``compile_blocks`` (see :class:`JEPAModule`) and the
            optimisation settings (see :class:`~usjepa.methods.base.PretrainModule`).
    """

    teacher: TokenEncoder

    def __init__(
        self,
        student: nn.Module,
        predictor: nn.Module,
        teacher: nn.Module,
        teacher_layers: int = 1,
        teacher_dtype: Literal["bfloat16", "float32"] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(student, predictor, **kwargs)
        if teacher_dtype not in (None, "bfloat16", "float32"):
            raise ValueError(f"teacher_dtype={teacher_dtype!r}; choose bfloat16, float32 or null")
        if teacher_layers < 1:
            raise ValueError(f"teacher_layers must be >= 1, got {teacher_layers}")
        self.teacher_layers = teacher_layers
        require(teacher, TokenEncoder, "teacher")
        width = getattr(teacher, "embed_dim", None)
        if width != self.predictor.out_dim:
            raise ValueError(
                f"predictor.out_dim={self.predictor.out_dim} must equal the teacher "
                f"width {width}; set predictor out_dim to the teacher's embed_dim"
            )
        self.teacher = cast(TokenEncoder, teacher.requires_grad_(False).eval())
        self.teacher_dtype = None if teacher_dtype is None else getattr(torch, teacher_dtype)
        if self.teacher_dtype is not None:
            teacher.to(self.teacher_dtype)
        #: affine map from the batch's standardisation to the teacher's
        #: (:meth:`set_input_stats`)
        self.teacher_input: tuple[float, float] = (1.0, 0.0)

    def set_input_stats(self, mean: float, std: float) -> None:
        """Tell the module the statistics its batches are standardised with (on [0, 1]
        pixels), so the teacher gets the input it expects: a zoo teacher undoes them
        itself (unless its config fixed its own), a teacher from one of our exports,
        trained on other statistics (its ``input_spec``), gets the batch re-standardised
        to its own. ``usjepa pretrain`` calls it with the DataModule's statistics once
        they are measured (:class:`usjepa.callbacks.InputStatsFromData`)."""
        adopt = getattr(self.teacher, "adopt_input_stats", None)
        spec = self.teacher.input_spec
        if callable(adopt):
            adopt(mean, std)
        elif spec is not None:
            t_mean, t_std = spec.scalar_stats
            self.teacher_input = (std / t_std, (mean - t_mean) / t_std)

    def on_train_epoch_start(self) -> None:
        """Keep the frozen teacher in eval mode."""
        cast(nn.Module, self.teacher).eval()  # Trainer.fit puts every submodule in train mode

    def compute_targets(self, images: Tensor, targets: Tensor) -> Tensor:
        """Target tokens from the frozen teacher (float32 ``[B, M, T, D_t]``)."""
        with torch.inference_mode():
            scale, shift = self.teacher_input
            if (scale, shift) != (1.0, 0.0):  # x_teacher = (x * std + mean - t_mean) / t_std
                images = images * scale + shift
            if self.teacher_dtype is not None:
                images = images.to(self.teacher_dtype)
            teacher = cast(nn.Module, self.teacher)
            out = self._target_tokens(teacher, images, targets, self.teacher_layers)
        # an inference tensor cannot be saved for the loss's backward: copy it out
        return out.to(torch.float32, copy=True)
