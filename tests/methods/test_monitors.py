"""Training monitors: collapse indicators with a warning, throughput and data waiting,
mask images, all in TensorBoard."""

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from tests.conftest import FixedBatches, tiny_encoder, tiny_predictor
from usjepa.callbacks import CollapseMonitor, MaskImages, ThroughputMonitor
from usjepa.callbacks.collapse import indicators, rankme
from usjepa.callbacks.monitors import overlay_masks
from usjepa.methods import SALTModule


def test_effective_rank_tells_spread_from_collapse():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(512, 32, generator=g)
    collapsed = torch.randn(512, 1, generator=g) * torch.randn(1, 32, generator=g)
    assert rankme(spread) > 28 and rankme(collapsed) < 1.5


def test_a_collapsing_student_is_warned_about_once():
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(1, 32, generator=g)
    kept = {
        "student": torch.randn(256, 1, generator=g) * direction,  # one direction
        "predictions": torch.randn(256, 32, generator=g),
        "targets": torch.randn(256, 32, generator=g),
    }
    values = indicators(kept)
    monitor = CollapseMonitor()
    with pytest.warns(UserWarning, match="collapse warning: student_rankme"):
        monitor.warn(values, kept)
    assert "predictor_rankme" not in monitor.warned  # the spread predictions pass
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monitor.warn(values, kept)  # not repeated while it stays low


def test_ranks_are_read_against_the_targets_rank():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(64, 128, generator=g)  # targets span 64 of 128 dimensions

    def low_rank(rank: int) -> torch.Tensor:
        return torch.randn(1024, rank, generator=g) @ basis[:rank]

    monitor = CollapseMonitor()  # floors: 2 % of the width, 10 % of the targets' rank
    following = {"student": low_rank(48), "predictions": low_rank(16), "targets": low_rank(64)}
    values = indicators(following)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monitor.warn(values, following)  # under the targets' rank, but learning
    shrunk = {**following, "predictions": low_rank(4)}
    values = indicators(shrunk)
    # above the width's floor: only the targets' rank tells that the predictor shrank
    assert 0.02 * 128 < values["predictor_rankme"] < 0.1 * values["target_rankme"]
    with pytest.warns(UserWarning, match=r"predictor_rankme = .*targets' rank"):
        monitor.warn(values, shrunk)


def test_masks_are_drawn_on_their_patches():
    images = torch.full((1, 1, 32, 32), 0.5)
    context = torch.tensor([[0, 1, -1]])  # top-left patches of a 4x4 grid
    targets = torch.tensor([[[15, -1]]])  # bottom-right patch
    rgb = overlay_masks(images, context, targets, grid=4)
    assert rgb.shape == (3, 32, 32)
    ctx, tgt, rest = rgb[:, 2, 2], rgb[:, 30, 30], rgb[:, 2, 20]
    assert ctx[1] > ctx[0] and tgt[0] > tgt[1] and rest.max() < ctx.max()


def test_monitors_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module = SALTModule(tiny_encoder(0), tiny_predictor(), tiny_encoder(1))
    monitors = [CollapseMonitor(every_n_steps=2), ThroughputMonitor(2), MaskImages(2, 2)]
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=4,
        logger=TensorBoardLogger(tmp_path, name="run"),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=monitors,
    )
    trainer.fit(module, DataLoader(FixedBatches(4), batch_size=None))
    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents*")).parent))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for name in (
        "student_rankme", "predictor_rankme", "target_rankme", "student_std", "predictor_std",
        "pred_target_cosine", "images_per_s", "data_wait_share",
    ):  # fmt: skip
        assert f"monitor/{name}" in scalars, name
        steps = [e.step for e in events.Scalars(f"monitor/{name}")]
        assert len(steps) == 2 and len(set(steps)) == 2, (name, steps)  # once per reading
    assert "monitor/masks" in events.Tags()["images"]
    assert 0.0 <= monitors[1].last["data_wait_share"] < 1.0
    assert not hasattr(module, "last_outputs")  # outputs travel with the step's return


def test_knn_scores_separate_clusters_from_noise():
    from usjepa.callbacks.online_probe import knn_scores

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(120) % 3
    centres = torch.nn.functional.normalize(torch.randn(3, 16, generator=g), dim=-1)
    clustered = torch.nn.functional.normalize(
        centres[labels] + 0.1 * torch.randn(120, 16, generator=g), dim=-1
    )
    noise = torch.nn.functional.normalize(torch.randn(120, 16, generator=g), dim=-1)
    assert knn_scores(clustered, labels, 3)["knn_macro_f1"] > 0.95
    assert knn_scores(noise, labels, 3)["knn_macro_f1"] < 0.6


def test_online_probe_logs_during_training(tmp_path):
    from usjepa.callbacks import OnlineProbe
    from usjepa.data.synthetic import generate_task

    root = generate_task(
        tmp_path / "task", n_patients_train_val=8, n_patients_test=2, images_per_patient=4,
        size=32, progress=False,
    )  # fmt: skip
    module = SALTModule(tiny_encoder(0), tiny_predictor(), tiny_encoder(1))
    probe = OnlineProbe(str(root), every_n_steps=2, max_images=24, k=5)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, callbacks=[probe],
    )  # fmt: skip
    trainer.fit(module, DataLoader(FixedBatches(3), batch_size=None))
    assert probe.images is not None and len(probe.images) == 24
    assert 0.0 <= probe.last["knn_macro_f1"] <= 1.0
    assert "monitor/knn_accuracy" in trainer.callback_metrics
    assert module.student.training  # put back in training mode


def test_online_probe_without_its_task_warns_and_stays_off(tmp_path):
    from usjepa.callbacks import OnlineProbe

    module = SALTModule(tiny_encoder(0), tiny_predictor(), tiny_encoder(1))
    probe = OnlineProbe(str(tmp_path / "not_built"), every_n_steps=1)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, callbacks=[probe],
    )  # fmt: skip
    with pytest.warns(UserWarning, match="OnlineProbe: no task at .*not_built"):
        trainer.fit(module, DataLoader(FixedBatches(2), batch_size=None))
    assert trainer.global_step == 2 and probe.images is None and not probe.last


def test_collapse_indicators_read_only_the_real_context_tokens():
    """The student's rows are its real context tokens: padded slots (-1) would add
    copies of one token and lower the measured rank."""
    from usjepa.callbacks.collapse import step_outputs

    student = torch.randn(2, 3, 8)
    context = torch.tensor([[0, 1, -1], [2, -1, -1]])
    kept = step_outputs({"student": student, "context": context, "predictions": student[0]})
    assert torch.equal(kept["student"], torch.stack([student[0, 0], student[0, 1], student[1, 0]]))
    assert set(kept) == {"student", "predictions"}
