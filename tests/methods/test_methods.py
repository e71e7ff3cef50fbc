import copy
import functools
import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import ListDataset, grating_batch, quiet_trainer, tiny_encoder, tiny_predictor
from usjepa.masks import MultiBlockMaskGenerator, RandomMaskGenerator
from usjepa.methods import IJEPAModule, MAEModule, SALTModule
from usjepa.methods.optim import WarmupCosine, param_groups
from usjepa.models import MAEDecoder


def _salt(**kw):
    return SALTModule(tiny_encoder(1), tiny_predictor(), tiny_encoder(2), **kw)


def test_every_trainable_parameter_gets_a_gradient_and_teacher_none():
    module = _salt()
    loss, _ = module.step_loss(grating_batch())
    loss.backward()
    for name, p in module.named_parameters():
        if name.startswith("teacher."):
            assert p.grad is None and not p.requires_grad, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_teacher_left_out_of_optimizer_groups():
    module = _salt()
    groups = param_groups(module.trainable_modules(), 0.04)
    ids = {id(p) for g in groups for p in g["params"]}
    assert not ids & {id(p) for p in module.teacher.parameters()}
    assert ids == {id(p) for n, p in module.named_parameters() if not n.startswith("teacher.")}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert id(module.student.vit.pos_embed) in no_decay
    assert id(module.student.vit.blocks[0].attn.qkv.bias) in no_decay
    assert id(module.student.vit.blocks[0].attn.qkv.weight) not in no_decay


@pytest.mark.parametrize("method", ["salt", "mae"])
def test_loss_falls_on_a_fixed_batch(method):
    torch.manual_seed(0)
    if method == "salt":
        module, batch = _salt(), grating_batch()
        params = [p for m in module.trainable_modules() for p in m.parameters()]
    else:
        module = MAEModule(tiny_encoder(1), MAEDecoder(4, 32, 64, width=32, depth=1, num_heads=2))
        batch = grating_batch(RandomMaskGenerator)
        params = list(module.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)
    losses = []
    for _ in range(40):
        loss, _ = module.step_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_teacher_unchanged_and_in_eval_mode_after_fit(tmp_path):
    module = _salt()
    before = copy.deepcopy(module.teacher.state_dict())
    student_before = copy.deepcopy(module.student.state_dict())
    modes = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            modes.append(pl_module.teacher.training)

    trainer = quiet_trainer(tmp_path, max_steps=4, callbacks=[Spy()])
    trainer.fit(
        module, DataLoader(ListDataset([grating_batch(seed=i) for i in range(4)]), batch_size=None)
    )
    for k, v in module.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    after = module.student.state_dict()
    assert any(not torch.equal(v, student_before[k]) for k, v in after.items())
    assert modes and not any(modes)


def test_width_mismatch_is_explained():
    with pytest.raises(ValueError, match="out_dim"):
        SALTModule(tiny_encoder(), tiny_predictor(out_dim=48), tiny_encoder())
    with pytest.raises(ValueError, match="grid"):
        SALTModule(tiny_encoder(), tiny_predictor(grid=8), tiny_encoder())
    with pytest.raises(ValueError, match="teacher_layers"):
        _salt(teacher_layers=0)


def test_teacher_of_another_width_grid_resolution_and_channels():
    # teacher: 3 channels, 48 px, patch 4 (12x12 grid), width 48; student: 32 px, 4x4 grid
    teacher = tiny_encoder(3, img_size=48, patch_size=4, in_chans=3, embed_dim=48)
    module = SALTModule(tiny_encoder(1), tiny_predictor(out_dim=48), teacher)
    batch = grating_batch()
    targets = module.compute_targets(batch["image"], batch["targets"])
    assert targets.shape == (*batch["targets"].shape, 48)
    loss, _ = module.step_loss(batch)
    assert torch.isfinite(loss)


def test_teacher_layers_average_the_last_blocks():
    module = _salt(teacher_layers=2, target_norm="none")
    batch = grating_batch()
    blocks = module.teacher.forward_blocks(batch["image"], 2)
    expected = torch.stack(blocks).mean(0)[:, 1:]
    got = module.compute_targets(batch["image"], batch["targets"])
    from usjepa.models.tokens import gather_tokens

    assert torch.allclose(got, gather_tokens(expected, batch["targets"]), atol=1e-6)
    last = _salt(target_norm="none").compute_targets(batch["image"], batch["targets"])
    assert not torch.allclose(got, last)


def test_weight_decay_follows_a_cosine_and_spares_unregularised_groups(tmp_path):
    seen = []

    class Spy(L.Callback):  # the decay each optimiser step uses
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            seen.append(sorted({g["weight_decay"] for g in optimizer.param_groups}))

    schedule = functools.partial(WarmupCosine, final_weight_decay=0.4)
    module = _salt(weight_decay=0.04, scheduler=schedule)
    trainer = quiet_trainer(tmp_path, max_steps=5, callbacks=[Spy()])
    trainer.fit(
        module, DataLoader(ListDataset([grating_batch(seed=i) for i in range(5)]), batch_size=None)
    )
    decays = [s[-1] for s in seen]
    assert all(s[0] == 0.0 for s in seen)  # biases and norms never decay
    assert decays[0] == pytest.approx(0.04) and all(b > a for a, b in zip(decays, decays[1:]))
    assert decays[-1] == pytest.approx(0.04 + 0.36 * (1 - math.cos(math.pi * 4 / 5)) / 2)


def test_ijepa_targets_are_an_ema_of_the_student(tmp_path):
    module = IJEPAModule(tiny_encoder(1), tiny_predictor(), ema_momentum=(0.9, 1.0))
    for a, b in zip(module.student.parameters(), module.target_encoder.parameters()):
        assert torch.equal(a, b) and not b.requires_grad
    start = copy.deepcopy(module.target_encoder.state_dict())
    momenta = []

    snaps = []  # (momentum, target params, student params) at each batch start and the end

    def snap(pl_module, m):
        params = pl_module.target_encoder.parameters(), pl_module.student.parameters()
        snaps.append((m, *[[p.detach().clone() for p in ps] for ps in params]))

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            momenta.append(pl_module.momentum)
            snap(pl_module, pl_module.momentum)

        def on_train_end(self, trainer, pl_module):
            snap(pl_module, None)

    trainer = quiet_trainer(tmp_path, max_steps=4, callbacks=[Spy()])
    trainer.fit(
        module, DataLoader(ListDataset([grating_batch(seed=i) for i in range(4)]), batch_size=None)
    )
    assert momenta == pytest.approx([0.9, 0.925, 0.95, 0.975])
    for (m, old, _), (_, new, student) in zip(snaps, snaps[1:]):  # EMA after each step
        for o, n, st in zip(old, new, student):
            assert torch.allclose(n, m * o + (1 - m) * st, atol=1e-6)
    changed = [not torch.equal(v, start[k]) for k, v in module.target_encoder.state_dict().items()]
    assert any(changed)
    assert not any(p.requires_grad for p in module.target_encoder.parameters())
    with pytest.warns(UserWarning, match="ignores the `teacher`"):
        IJEPAModule(tiny_encoder(1), tiny_predictor(), teacher=tiny_encoder(2))


def test_ijepa_exports_its_ema_target_encoder_as_i_jepa_evaluates(tmp_path):
    """I-JEPA evaluates the target encoder; an export of an EMA run is that encoder, not
    the student, once training has moved them apart."""
    from safetensors.torch import load_file

    from usjepa.callbacks import ExportEncoder

    module = IJEPAModule(tiny_encoder(1), tiny_predictor(), ema_momentum=(0.5, 0.5))
    assert module.trained_network is module.target_encoder
    export = ExportEncoder(str(tmp_path / "ema.safetensors"))
    trainer = quiet_trainer(tmp_path, max_steps=3, callbacks=[export])
    trainer.fit(
        module, DataLoader(ListDataset([grating_batch(seed=i) for i in range(3)]), batch_size=None)
    )
    written = load_file(str(tmp_path / "ema.safetensors"))
    strip = lambda sd: {k.removeprefix("vit."): v for k, v in sd.items()}  # noqa: E731
    target = strip(module.target_encoder.state_dict())
    student = strip(module.student.state_dict())
    moved = [k for k in written if not torch.equal(target[k], student[k])]
    assert moved, "the student and its EMA did not separate; the test cannot tell them apart"
    assert all(torch.equal(written[k], target[k]) for k in written)


def test_ijepa_ema_moves_once_per_optimiser_step_under_accumulation(tmp_path):
    module = IJEPAModule(tiny_encoder(1), tiny_predictor(), ema_momentum=(0.9, 1.0))
    moved = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.before = [p.detach().clone() for p in pl_module.target_encoder.parameters()]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            after = pl_module.target_encoder.parameters()
            moved.append(any(not torch.equal(a, b) for a, b in zip(self.before, after)))

    trainer = quiet_trainer(tmp_path, max_steps=3, callbacks=[Spy()], accumulate_grad_batches=2)
    trainer.fit(
        module, DataLoader(ListDataset([grating_batch(seed=i) for i in range(6)]), batch_size=None)
    )
    assert moved == [False, True, False, True, False, True]  # 6 micro-batches, 3 steps


def test_gradients_are_freed_after_each_optimiser_step_but_kept_while_accumulating(tmp_path):
    held = []  # at each micro-batch's start: does any trainable parameter hold a gradient?

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            held.append(any(p.grad is not None for p in pl_module.student.parameters()))

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            held.append("step")

    trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[Spy()], accumulate_grad_batches=2)
    batches = [grating_batch(seed=i) for i in range(4)]
    trainer.fit(_salt(), DataLoader(ListDataset(batches), batch_size=None))
    # the second micro-batch of each step accumulates onto the first one's gradients;
    # the next step's forward starts with none held
    assert held == [False, True, "step", False, True, "step"]


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    module = _salt()
    bad = grating_batch()
    bad["image"][0, 0, 0, 0] = float("nan")
    trainer = quiet_trainer(tmp_path, max_steps=1)
    with pytest.raises(FloatingPointError, match="learning rate"):
        trainer.fit(module, DataLoader(ListDataset([bad]), batch_size=None))


@pytest.mark.parametrize("method", ["salt", "mae"])
def test_loss_counts_only_real_target_slots(method):
    """Padding an image's sets changes nothing: the loss of a batch padded with -1 equals
    the loss over the same real slots without padding."""
    torch.manual_seed(0)
    gen = MultiBlockMaskGenerator if method == "salt" else RandomMaskGenerator
    batch = grating_batch(gen, n=4)
    if method == "salt":
        module = _salt().eval()
    else:
        module = MAEModule(tiny_encoder(1), MAEDecoder(4, 32, 64, 32, 1, 2)).eval()
    loss, _ = module.step_loss(batch)
    pad = torch.full_like(batch["context"][:, :3], -1)
    padded = dict(batch)
    padded["context"] = torch.cat([batch["context"], pad], 1)
    tpad = torch.full_like(batch["targets"][..., :2], -1)
    padded["targets"] = torch.cat([batch["targets"], tpad], -1)
    loss_padded, _ = module.step_loss(padded)
    assert torch.allclose(loss, loss_padded, atol=1e-6)


def test_zoo_teacher_adopts_the_corpus_statistics_unless_fixed():
    """The DataModule's measured input statistics reach a zoo teacher at setup (through
    the callback ``usjepa pretrain`` adds), so the teacher sees the pixels it expects
    without the user repeating numbers."""
    from types import SimpleNamespace

    from usjepa.callbacks import InputStatsFromData
    from usjepa.models.zoo import ZooEncoder

    tiny = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
    for fixed, expected in ((None, (0.31, 0.17)), (0.5, (0.5, 1.0))):
        teacher = ZooEncoder("urfm", arch_overrides=tiny, input_mean=fixed)
        module = SALTModule(tiny_encoder(1), tiny_predictor(), teacher)
        trainer = SimpleNamespace(datamodule=SimpleNamespace(mean=0.31, std=0.17))
        InputStatsFromData().setup(trainer, module, "fit")  # type: ignore[arg-type]
        assert (teacher.input_mean, teacher.input_std) == pytest.approx(expected)


def test_exported_teacher_gets_the_batch_in_its_own_statistics():
    """A stage-1 export trained on other statistics sees its own standardisation:
    x_teacher = (x * std + mean - t_mean) / t_std."""
    from usjepa.models.input_spec import InputSpec

    teacher = tiny_encoder(2)
    teacher.input_spec = InputSpec(32, 1, (0.2,), (0.1,))
    module = SALTModule(tiny_encoder(1), tiny_predictor(), teacher)
    module.set_input_stats(0.3, 0.2)
    scale, shift = module.teacher_input
    x = torch.rand(2, 1, 32, 32)
    pixels = x * 0.2 + 0.3
    assert torch.allclose(x * scale + shift, (pixels - 0.2) / 0.1, atol=1e-6)


def test_bf16_teacher_gives_float32_targets_close_to_the_float32_teacher():
    batch = grating_batch()
    exact = _salt().compute_targets(batch["image"], batch["targets"])
    module = _salt(teacher_dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in module.teacher.parameters())
    fast = module.compute_targets(batch["image"], batch["targets"])
    assert fast.dtype == torch.float32 and not fast.is_inference()
    cos = torch.nn.functional.cosine_similarity(fast.flatten(0, -2), exact.flatten(0, -2))
    assert cos.min() > 0.99, cos.min()
    assert not torch.equal(fast, exact)  # it did run in bf16
    loss, _ = module.step_loss(batch)
    loss.backward()  # the targets are ordinary tensors: the loss can save them
    assert module.student.vit.cls_token.grad is not None
    with pytest.raises(ValueError, match="teacher_dtype"):
        _salt(teacher_dtype="half")


@pytest.mark.parametrize("mode", ["full", "selective"])
@pytest.mark.parametrize("one_pass", [False, True])
def test_activation_checkpointing_changes_no_loss_or_gradient(one_pass, mode):
    batch = grating_batch()
    grads = []
    module = _salt(activation_checkpointing=True)
    assert module.student.grad_checkpointing == module.predictor.grad_checkpointing == "full"
    module.predictor.one_pass = one_pass
    for checkpointing in ("none", mode):
        module.student.grad_checkpointing = module.predictor.grad_checkpointing = checkpointing
        module.zero_grad(set_to_none=True)
        loss, _ = module.step_loss(batch)
        loss.backward()
        grads.append((loss.detach(), [p.grad for p in module.parameters() if p.requires_grad]))
    (loss0, g0), (loss1, g1) = grads
    assert torch.equal(loss0, loss1)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g0, g1, strict=True))


def test_selective_checkpointing_keeps_less_and_runs_no_matmul_twice():
    """``selective`` keeps fewer bytes for the backward pass than ``none`` and more than
    ``full``, and, unlike ``full``, adds no FLOPs (only pointwise ops are recomputed)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = grating_batch()
    module = _salt()
    kept, flops = {}, {}
    # activations only: a linear layer keeps its weight (or a view of it), whatever runs it
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
    for mode in ("none", "selective", "full"):
        module.student.grad_checkpointing = module.predictor.grad_checkpointing = mode
        sizes: list[int] = []

        def pack(t: torch.Tensor, sizes: list[int] = sizes) -> torch.Tensor:
            if t.untyped_storage().data_ptr() not in weights:  # a parameter, or a view of one
                sizes.append(t.untyped_storage().nbytes())
            return t

        with FlopCounterMode(display=False) as counter:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss, _ = module.step_loss(batch)
            loss.backward()
        kept[mode], flops[mode] = sum(sizes), counter.get_total_flops()
    assert kept["full"] < kept["selective"] < 0.9 * kept["none"], kept
    assert flops["selective"] == flops["none"] < flops["full"], flops
    with pytest.raises(ValueError, match="activation_checkpointing"):
        _salt(activation_checkpointing="some")


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_fused_adamw_is_clipped_under_bf16_mixed(tmp_path, algorithm):
    """Lightning refuses to clip for a fused optimiser under any mixed precision; under
    bf16-mixed (no gradient scaler) the module clips as under full precision."""
    seen = []  # per step: the largest gradient norm or entry the optimiser stepped with

    class Recording(torch.optim.AdamW):
        def step(self, closure=None):
            loss = None
            if closure is not None:  # Lightning's closure: forward, backward, clipping
                with torch.enable_grad():
                    loss = closure()
            grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
            if algorithm == "norm":
                seen.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
            else:
                seen.append(max(float(g.abs().max()) for g in grads))
            super().step()
            return loss

    module = _salt(optimizer=functools.partial(Recording, lr=1e-3, fused=True))
    trainer = quiet_trainer(
        tmp_path, max_steps=2, precision="bf16-mixed", gradient_clip_val=1e-3,
        gradient_clip_algorithm=algorithm,
    )  # fmt: skip
    trainer.fit(
        module, DataLoader(ListDataset([grating_batch(seed=i) for i in range(2)]), batch_size=None)
    )
    assert len(seen) == 2 and all(0 < v <= 1e-3 * (1 + 1e-4) for v in seen), seen
