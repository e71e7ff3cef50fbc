"""Each fact stated once: derived settings (links), saved hyperparameters that rebuild a
module from its checkpoint, and an injected learning-rate schedule."""

import functools
import math

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from tests.conftest import FixedBatches, fit_and_save, tiny_encoder, tiny_predictor
from usjepa.cli import PretrainCLI
from usjepa.methods import MAEModule, SALTModule, WarmupCosine
from usjepa.models import MAEDecoder

VIT = {"patch_size": 8, "embed_dim": 48, "depth": 1, "num_heads": 2}


def _cli(tmp_path, model: dict, masks: str = "MultiBlockMaskGenerator", extra=()):
    """Build (not run) ``usjepa pretrain`` from a config that states no derived fact."""
    config = {
        "trainer": {"accelerator": "cpu", "max_steps": 2, "default_root_dir": str(tmp_path)},
        "model": model,
        "data": {
            "class_path": "usjepa.data.CorpusDataModule",
            "init_args": {
                "manifest": str(tmp_path / "m.parquet"),
                "mask_generator": {"class_path": f"usjepa.masks.{masks}"},
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return PretrainCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=["--config", str(path), *extra],
    )


def test_predictor_and_data_follow_the_student(tmp_path):
    student = {"class_path": "usjepa.models.ViTEncoder", "init_args": {"img_size": 96, **VIT}}
    teacher = {"class_path": "usjepa.models.ViTEncoder", "init_args": {"img_size": 64, **VIT}}
    model = {
        "class_path": "usjepa.methods.SALTModule",
        "init_args": {
            "student": student,
            "teacher": teacher,
            "predictor": {"class_path": "usjepa.models.JEPAPredictor", "init_args": {"width": 16}},
        },
    }
    cli = _cli(tmp_path, model)
    predictor = cli.model.predictor
    assert (predictor.grid_size, predictor.in_dim, predictor.out_dim) == (12, 48, 48)
    assert cli.datamodule.img_size == 96
    assert cli.datamodule.collate.generator.grid_size == 12
    # one change of the student moves everything that follows from it
    cli = _cli(tmp_path, model, extra=["--model.init_args.student.init_args.img_size", "64"])
    assert cli.model.predictor.grid_size == 8 and cli.datamodule.img_size == 64
    assert cli.datamodule.collate.generator.grid_size == 8


def test_decoder_and_data_follow_the_mae_encoder(tmp_path):
    encoder = {
        "class_path": "usjepa.models.ViTEncoder",
        "init_args": {"img_size": 64, "in_chans": 1, **{**VIT, "patch_size": 16}},
    }
    model = {
        "class_path": "usjepa.methods.MAEModule",
        "init_args": {
            "encoder": encoder,
            "decoder": {"class_path": "usjepa.models.MAEDecoder", "init_args": {"width": 16}},
        },
    }
    cli = _cli(tmp_path, model, masks="RandomMaskGenerator")
    decoder = cli.model.decoder
    assert decoder.grid_size == 4 and decoder.embed.in_features == 48
    assert decoder.head.out_features == 16 * 16
    assert cli.datamodule.img_size == 64 and cli.datamodule.collate.generator.grid_size == 4


def test_a_module_built_in_python_reloads_given_its_networks(tmp_path):
    module = SALTModule(
        tiny_encoder(0), tiny_predictor(), tiny_encoder(1), target_norm="none", weight_decay=0.1
    )
    assert {"student", "predictor", "teacher"}.isdisjoint(module.hparams)
    assert module.hparams["target_norm"] == "none" and module.hparams["weight_decay"] == 0.1
    path = fit_and_save(module, tmp_path)
    again = SALTModule.load_from_checkpoint(
        path, student=tiny_encoder(5), predictor=tiny_predictor(), teacher=tiny_encoder(6)
    )
    assert again.target_norm == "none" and again.weight_decay == 0.1
    for (name, a), b in zip(module.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_module_built_by_the_cli_reloads_from_its_checkpoint_alone(tmp_path):
    student = {"class_path": "usjepa.models.ViTEncoder", "init_args": {"img_size": 32, **VIT}}
    model = {
        "class_path": "usjepa.methods.MAEModule",
        "init_args": {
            "encoder": student,
            "decoder": {"class_path": "usjepa.models.MAEDecoder", "init_args": {"width": 16}},
            "norm_pix_loss": False,
        },
    }
    cli = _cli(tmp_path, model, masks="RandomMaskGenerator")
    assert cli.model.hparams["encoder"]["init_args"]["img_size"] == 32
    cli.trainer.strategy.connect(cli.model)
    path = tmp_path / "cli.ckpt"
    cli.trainer.save_checkpoint(path)
    rebuilt = MAEModule.load_from_checkpoint(path)
    assert isinstance(rebuilt.decoder, MAEDecoder) and rebuilt.norm_pix_loss is False
    assert rebuilt.decoder.grid_size == 4  # the linked value was saved too
    for (name, a), b in zip(cli.model.state_dict().items(), rebuilt.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_schedule_is_injected(tmp_path):
    lrs = []

    class Spy(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            lrs.append(optimizer.param_groups[0]["lr"])

    step = functools.partial(torch.optim.lr_scheduler.StepLR, gamma=0.5)  # (optimizer, step_size)
    module = SALTModule(
        tiny_encoder(0),
        tiny_predictor(),
        tiny_encoder(1),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        scheduler=lambda optimizer, total: step(optimizer, step_size=total // 2),
    )
    fit_and_save(module, tmp_path, steps=4, callbacks=[Spy()])
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_the_default_schedule_warms_up_then_decays_by_cosine():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupCosine(opt, total_steps=10, warmup_fraction=0.2, min_lr_ratio=0.1)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert seen[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert all(b < a for a, b in zip(seen[2:], seen[3:]))
    assert seen[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_a_fast_dev_run_leaves_the_run_export_alone(tmp_path, capsys):
    from usjepa.callbacks import ExportEncoder

    module = SALTModule(tiny_encoder(0), tiny_predictor(), tiny_encoder(1))
    fit_and_save(module, tmp_path, steps=2, callbacks=[ExportEncoder()])
    export = tmp_path / "encoder.safetensors"
    written = export.read_bytes()
    trial = L.Trainer(
        accelerator="cpu",
        fast_dev_run=1,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        callbacks=[ExportEncoder()],
    )
    trial.fit(
        SALTModule(tiny_encoder(3), tiny_predictor(), tiny_encoder(1)),
        DataLoader(FixedBatches(1), batch_size=None),
    )
    assert export.read_bytes() == written
    assert "fast_dev_run: no export written" in capsys.readouterr().out
