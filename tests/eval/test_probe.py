import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import real_scan_task, tiny_encoder
from usjepa.data.tasks import ProbeDataModule, grouped_split
from usjepa.eval.features import pool_tokens
from usjepa.eval.protocol import ProbeProtocol
from usjepa.eval.report import paper_table, summarise
from usjepa.eval.runner import run_probe


def _blobs(n, d, classes, seed, sep):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, d, generator=torch.Generator().manual_seed(99)) * sep
    y = torch.arange(n) % classes
    x = centers[y] + torch.randn(n, d, generator=g)
    return {"cls": x, "mean": torch.randn(n, d, generator=g)}, y


def _one_head(epochs: int) -> ProbeProtocol:
    return ProbeProtocol(lrs=(1e-2,), weight_decays=(1e-4,), epochs=epochs, batch_size=64)


def test_probe_finds_the_informative_pooling_and_scores_high():
    tr, ytr = _blobs(300, 16, 4, 0, 1.5)
    va, yva = _blobs(100, 16, 4, 1, 1.5)
    te, yte = _blobs(200, 16, 4, 2, 1.5)
    out = _one_head(epochs=30).score(tr, ytr, va, yva, te, yte, 4, 0)
    assert out["pooling"] == "cls"  # the "mean" features are pure noise
    assert out["macro_f1"] > 0.9


def test_probe_on_noise_is_near_chance():
    tr, ytr = _blobs(300, 16, 4, 0, 0.0)
    va, yva = _blobs(100, 16, 4, 1, 0.0)
    te, yte = _blobs(400, 16, 4, 2, 0.0)
    out = _one_head(epochs=20).score(tr, ytr, va, yva, te, yte, 4, 0)
    assert out["macro_f1"] < 0.4


def test_grouped_split_keeps_groups_whole_and_reaches_every_class():
    groups = np.repeat(np.arange(40), 5).astype(str)
    labels = np.repeat(np.arange(40) % 4, 5)
    val = grouped_split(groups, labels, 0.25, seed=0)
    assert 0.15 < val.mean() < 0.35
    for g in np.unique(groups):
        assert len(set(val[groups == g])) == 1
    assert set(labels[val]) == {0, 1, 2, 3}
    assert not np.array_equal(val, grouped_split(groups, labels, 0.25, seed=1))


def test_pooling_shapes():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float).reshape(2, 5, 3)
    assert torch.equal(pool_tokens(tokens, "cls"), tokens[:, 0])
    assert torch.allclose(pool_tokens(tokens, "mean"), tokens[:, 1:].mean(1))
    assert pool_tokens(tokens, "cls_mean").shape == (2, 6)


def test_table_layout():
    per_seed = pd.DataFrame(
        {"model": ["a", "a", "b", "b"], "task": ["t"] * 4, "macro_f1": [0.5, 0.7, 0.2, 0.2]}
    )
    table = paper_table(summarise(per_seed))
    assert table.loc["a", "t"] == "60.0 ± 14.1"
    assert table.loc["b", "t"] == "20.0 ± 0.0"


def test_run_probe_end_to_end_with_cache(task_dir, tmp_path):
    task = ProbeDataModule(str(task_dir), img_size=32)
    encoders = {"r1": tiny_encoder(1), "r2": tiny_encoder(2)}
    out = run_probe(
        encoders,
        task,
        protocol=ProbeProtocol(seeds=(0, 1), epochs=5),
        out_dir=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
    )
    assert len(out) == 4 and set(out["model"]) == {"r1", "r2"}
    assert out["macro_f1"].between(0, 1).all()
    for name in ("probe_per_seed.csv", "probe_summary.csv", "probe_table.md"):
        assert (tmp_path / "out" / name).exists()
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 4  # 2 encoders x 2 splits
    again = run_probe(
        encoders,
        task,
        protocol=ProbeProtocol(seeds=(0, 1), epochs=5),
        out_dir=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
    )
    assert np.allclose(again["macro_f1"], out["macro_f1"])


def test_classification_scores_on_known_predictions():
    from usjepa.eval.metrics import classification_scores, confusion

    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 2, 2, 2]), 3).float() * 5
    s = classification_scores(logits, labels, 3)
    assert s["accuracy"] == pytest.approx(5 / 6)
    assert s["f1_class0"] == pytest.approx(1.0)
    assert s["f1_class1"] == pytest.approx(2 / 3)
    assert s["f1_class2"] == pytest.approx(0.8)
    assert s["macro_f1"] == pytest.approx((1 + 2 / 3 + 0.8) / 3)
    assert s["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert confusion(logits, labels, 3).tolist() == [[2, 0, 0], [0, 1, 1], [0, 0, 2]]


def test_head_grid_agrees_with_sklearn_logistic_regression(tmp_path):
    """The reference path: the grid and L-BFGS logistic regression, same features and
    splits, agree within 1 macro-F1 point (mean over 3 seeds) on the synthetic task."""
    import torch.nn.functional as F

    from usjepa.data.synthetic import generate_task
    from usjepa.eval.features import extract_features
    from usjepa.eval.reference import sklearn_probe

    class Pixels(torch.nn.Module):  # an 8x8 thumbnail as the "class token"
        num_prefix_tokens = 1

        def forward(self, x):
            thumb = F.adaptive_avg_pool2d(x, 8).flatten(1)
            return torch.stack([thumb, thumb], 1)

    root = generate_task(
        tmp_path / "task",
        n_patients_train_val=150,
        n_patients_test=80,
        images_per_patient=6,
        size=32,
        progress=False,
    )
    task = ProbeDataModule(str(root), img_size=32)
    task.setup()
    feats = {
        s: extract_features(Pixels(), task.dataloader(s), ("cls",))["cls"]
        for s in ("train_val", "test")
    }
    y_tv, y_te = torch.tensor(task.labels("train_val")), torch.tensor(task.labels("test"))
    diffs = []
    for seed in range(3):
        val = torch.from_numpy(task.val_mask(seed))
        split = (feats["train_val"][~val], y_tv[~val], feats["train_val"][val], y_tv[val])
        grid = ProbeProtocol().score(  # the default protocol
            {"cls": split[0]},
            split[1],
            {"cls": split[2]},
            split[3],
            {"cls": feats["test"]},
            y_te,
            task.num_classes,
            seed,
        )
        ref = sklearn_probe(*split, feats["test"], y_te, task.num_classes)
        assert grid["macro_f1"] > 0.4 and ref["macro_f1"] > 0.4  # well above chance (0.17)
        diffs.append(grid["macro_f1"] - ref["macro_f1"])
    assert abs(float(np.mean(diffs))) <= 0.01, diffs


def test_concat_over_the_last_blocks():
    from torch.utils.data import DataLoader

    from usjepa.eval.features import extract_features

    encoder = tiny_encoder(0)
    images = torch.randn(4, 1, 32, 32)
    loader = DataLoader([{"image": x} for x in images], batch_size=2)
    feats = extract_features(encoder, loader, ("cls", "cls_last2", "mean_last2"))
    assert feats["cls_last2"].shape == (4, 64) and feats["mean_last2"].shape == (4, 64)
    assert torch.allclose(feats["cls_last2"][:, 32:], feats["cls"], atol=1e-5)  # last block
    with torch.no_grad():
        first = encoder.forward_blocks(images, 2)[0][:, 0]
    assert torch.allclose(feats["cls_last2"][:, :32], first, atol=1e-5)


def test_few_shot_fractions_end_to_end(task_dir, tmp_path):
    from usjepa.eval.runner import few_shot_rows

    task = ProbeDataModule(str(task_dir), img_size=32, val_fraction=0.25)
    task.setup()
    groups, labels = task.groups("train_val"), task.labels("train_val")
    pool = ~task.val_mask(0)
    keep = few_shot_rows(groups, labels, pool, 0.1, 0)
    assert keep.sum() < pool.sum() and not (keep & ~pool).any()
    assert set(labels[keep]) == set(labels[pool])  # every class keeps a patient
    for g in np.unique(groups[pool]):  # whole patients
        assert len(set(keep[groups == g])) == 1
    per_seed = run_probe(
        {"enc": tiny_encoder(0)},
        task,
        protocol=ProbeProtocol(
            seeds=(0, 1), poolings=("cls",), lrs=(1e-2,), weight_decays=(1e-4,), epochs=2
        ),
        out_dir=str(tmp_path),
        cache_dir=None,
        fractions=[0.25, 1.0],
    )
    assert set(per_seed["fraction"]) == {0.25, 1.0}
    assert (tmp_path / "fewshot.png").exists() and (tmp_path / "probe_table.md").exists()
    table = (tmp_path / "fewshot.md").read_text()
    assert "25%" in table and "100%" in table
    assert table.splitlines()[2].startswith("| model ") and "('" not in table  # plain columns
    assert "Labeled training images (mean over seeds): " in table
    few = pd.read_csv(tmp_path / "fewshot.csv")
    every = pd.read_csv(tmp_path / "fewshot_per_seed.csv")
    assert len(every) == len(per_seed) and set(every["fraction"]) == {0.25, 1.0}
    assert (few.groupby("fraction")["train_images"].mean().diff().dropna() > 0).all()


def test_corruptions_stay_inside_the_scan_region():
    from usjepa.data.corruptions import CORRUPTIONS, corrupt
    from usjepa.data.synthetic import draw_patient, render_frame

    rng = np.random.default_rng(0)
    image, mask = render_frame(draw_patient(64, rng, "convex"), 1, rng)
    for name in CORRUPTIONS:
        levels = [corrupt(image, mask, name, s, seed=3) for s in (1, 5)]
        for out in levels:
            assert out.dtype == np.uint8 and (out[mask == 0] == image[mask == 0]).all(), name
        assert not np.array_equal(levels[1], image), name  # severity 5 changes the region
        assert np.array_equal(levels[0], corrupt(image, mask, name, 1, seed=3)), name  # seeded
    with pytest.raises(ValueError, match="severity"):
        corrupt(image, mask, "speckle", 6)


def test_robustness_runner_end_to_end(task_dir, tmp_path):
    from usjepa.eval.robustness import run_robustness

    task = ProbeDataModule(str(task_dir), img_size=32, val_fraction=0.25)
    per_seed = run_robustness(
        {"enc": tiny_encoder(0)},
        task,
        corruptions=["speckle", "gain_down"],
        severities=[1, 5],
        protocol=ProbeProtocol(
            seeds=(0,), poolings=("cls",), lrs=(1e-2,), weight_decays=(1e-4,), epochs=2
        ),
        out_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
    )
    assert len(per_seed) == 1 + 2 * 2  # clean + corruptions x severities
    for name in (
        "robustness.csv",
        "robustness_summary.csv",
        "robustness.md",
        "robustness.png",
        "corruptions.png",
    ):
        assert (tmp_path / name).exists(), name
    table = (tmp_path / "robustness.md").read_text()
    assert "clean" in table and "gain_down" in table


def test_class_token_poolings_need_a_class_token():
    tokens = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="class token"):
        pool_tokens(tokens, "cls", num_prefix_tokens=0)
    assert torch.allclose(pool_tokens(tokens, "mean", num_prefix_tokens=0), tokens.mean(1))


def test_features_of_an_encoder_without_class_token_skip_cls_poolings():
    from torch.utils.data import DataLoader

    from usjepa.eval.features import extract_features

    class MapEncoder(torch.nn.Module):
        num_prefix_tokens = 0

        def forward(self, x):
            return x.flatten(2).transpose(1, 2)  # [B, H*W, C] patch tokens only

    loader = DataLoader([{"image": torch.randn(3, 2, 2)} for _ in range(4)], batch_size=2)
    feats = extract_features(MapEncoder(), loader, ("cls", "mean"))
    assert set(feats) == {"mean"} and feats["mean"].shape == (4, 3)
    with pytest.raises(ValueError, match="no class token"):
        extract_features(MapEncoder(), loader, ("cls",))


def test_trainer_path_equals_the_fast_head_grid():
    """LinearProbeModule through Lightning's Trainer (FeatureDataModule) trains the very
    same heads as its plain loop: same batches, same update, same best head and F1."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (90,), generator=g)
    centres = torch.randn(3, 16, generator=g)
    feats = {p: centres[y] + torch.randn(90, 16, generator=g) for p in ("cls", "mean")}
    train = {p: f[:60] for p, f in feats.items()}
    val = {p: f[60:] for p, f in feats.items()}
    args = (train, y[:60], val, y[60:], 3, 1)
    grid = dict(lrs=(1e-3, 1e-2), weight_decays=(1e-4, 1e-1), epochs=4, batch_size=16)
    fast, best_fast, f1_fast = ProbeProtocol(**grid, engine="grid").fit(*args)
    slow, best_slow, f1_slow = ProbeProtocol(**grid, engine="trainer").fit(*args)
    for p in fast.poolings:
        assert torch.allclose(fast.weight[p], slow.weight[p], atol=1e-5)
        assert torch.allclose(fast.bias[p], slow.bias[p], atol=1e-5)
    assert best_fast == best_slow and torch.allclose(f1_fast, f1_slow)
    assert f1_fast.max() > 0.6  # the heads learned the three clusters


def test_probe_on_real_scans(tmp_path):
    """The probe path on real lung scans (tests/fixtures/real_scans): a task made from
    them by `make-task`, features of a frozen encoder, the head grid, a scored table."""
    task = real_scan_task(tmp_path)
    result = run_probe(
        {"random_init": tiny_encoder(seed=3)},
        ProbeDataModule(str(task), img_size=32),
        protocol=ProbeProtocol(seeds=(0, 1), epochs=20),
        out_dir=str(tmp_path / "out"),
        cache_dir=None,
    )
    assert len(result) == 2 and result["macro_f1"].between(0, 1).all()
    summary = pd.read_csv(tmp_path / "out/probe_summary.csv")
    assert summary["model"].tolist() == ["random_init"]


def test_only_the_probed_encoders_are_built(task_dir, tmp_path):
    """A config's encoders arrive as builders; `models` picks some, the others are never
    built (their checkpoints need not exist)."""
    built = []

    def build(name):
        def make():
            built.append(name)
            return tiny_encoder(0)

        return make

    task = ProbeDataModule(str(task_dir), img_size=32, val_fraction=0.25)
    per_seed = run_probe(
        {"wanted": build("wanted"), "absent": build("absent")},
        task,
        models=["wanted"],
        protocol=ProbeProtocol(seeds=(0,), poolings=("cls",), lrs=(1e-2,), epochs=1),
        out_dir=str(tmp_path),
        cache_dir=None,
    )
    assert built == ["wanted"] and set(per_seed["model"]) == {"wanted"}
