"""Pretraining throughput from frames on disk, loading included: ours against the peer's.

The same frames (256-px grayscale JPEGs written by ``usjepa data build`` from synthetic
B-mode frames, as in ``loading.py``) feed two pipelines, each timed as a whole (wall
clock from asking for a batch to the end of the optimiser step), with one loader worker
and two compute threads on this machine's two cores:

* **usjepa**: :class:`usjepa.data.CorpusDataModule` (file reads, scan masks, crop,
  USrc multi-block masks drawn in the worker, uint8 batches normalised after transfer)
  into :class:`usjepa.methods.SALTModule` with the one-pass predictor and the bf16
  teacher. A second row draws the masks over the whole frame (``scan_region: false``),
  as the peer does, so its FLOPs match the peer's.
* **stable-pretraining**: the usual image-folder loading (torchvision ``ImageFolder``,
  PIL decode to RGB, ``RandomResizedCrop(224, scale=(0.3, 1.0))``, float tensors
  normalised in the worker) into stable-pretraining's ``SALT``, which draws its own masks
  in the forward pass.

Settings of issue 13: ViT-S/16 at 224 px, batch 16, predictor width 384 / depth 6 /
12 heads, one context block (0.85-1.0) and four target blocks (0.15-0.2), AdamW. Each
row runs in its own process. Needs the peer (``make bench-peers``); run with
``.venv-bench/bin/python``.

    .venv-bench/bin/python -m benchmarks.perf.end_to_end [--steps 12] [--warmup 4] [--repeats 4]

Writes ``results/perf/end_to_end/end_to_end.{csv,md}`` (medians over ``--repeats`` interleaved
rounds) and ``end_to_end_runs.csv`` (every run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import (
    flop_counter,
    in_child,
    peak_rss_gb,
    record_env,
    results_dir,
    summarise,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = results_dir(__file__)
VIT_S = {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6}
PRED = {"width": 384, "depth": 6, "num_heads": 12}
BLOCKS = {"num_targets": 4, "context_scale": (0.85, 1.0), "target_scale": (0.15, 0.2)}
#: selective activation checkpointing (PyTorch's own)
FAST = {"activation_checkpointing": "selective"}
ROWS = {
    "usjepa (USrc masks)": {"side": "ours", "scan_region": True},
    "usjepa (masks over the whole frame)": {"side": "ours", "scan_region": False},
    "usjepa (USrc masks), selective checkpointing": {
        "side": "ours",
        "scan_region": True,
        **FAST,
    },
    "usjepa (masks over the whole frame), selective checkpointing": {
        "side": "ours",
        "scan_region": False,
        **FAST,
    },
    "stable-pretraining (image folder)": {"side": "peer"},
}
PEER = "stable-pretraining (image folder)"


def ours(corpus: Path, batch: int, opts: dict[str, Any]) -> tuple[Any, Iterator, Any]:
    """Our DataModule's training batches and the SALT step on them."""
    from usjepa.data import CorpusDataModule
    from usjepa.masks import MultiBlockMaskGenerator
    from usjepa.methods import SALTModule
    from usjepa.models import JEPAPredictor, ViTEncoder

    scan_region = bool(opts["scan_region"])

    data = CorpusDataModule(
        str(corpus / "manifest.parquet"),
        MultiBlockMaskGenerator(14, **BLOCKS),  # type: ignore[arg-type]
        img_size=224, batch_size=batch, num_workers=1, scan_region=scan_region,
        val_fraction=0.0,
    )  # fmt: skip
    data.setup("fit")
    module = SALTModule(
        ViTEncoder(**VIT_S, in_chans=1, init_seed=0),
        JEPAPredictor(14, 384, 384, **PRED, one_pass=True),
        ViTEncoder(**VIT_S, in_chans=1, init_seed=1),
        teacher_dtype="bfloat16",
        activation_checkpointing=opts.get("activation_checkpointing", False),
    )

    def batches() -> Iterator:
        while True:
            for b in data.train_dataloader():
                yield data.on_after_batch_transfer(b, 0)

    def loss(b: dict) -> Any:
        return module.step_loss(b)[0]

    return module, batches(), loss


def peer(corpus: Path, batch: int) -> tuple[Any, Iterator, Any]:
    """The usual image-folder loading and stable-pretraining's SALT."""
    import torch
    from stable_pretraining.methods.salt import SALT
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision.transforms import v2

    folder = corpus.parent / "image_folder"
    if not folder.exists():  # ImageFolder wants root/<class>/<image>: link the frames
        (folder / "ultrasound").mkdir(parents=True)
        for i, frame in enumerate(sorted(corpus.rglob("*.jpg"))):
            (folder / "ultrasound" / f"{i:06d}.jpg").symlink_to(frame.resolve())
    transform = v2.Compose([
        v2.RandomResizedCrop(224, scale=(0.3, 1.0), antialias=True),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])  # fmt: skip
    dataset = datasets.ImageFolder(str(folder), transform=transform)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=1, drop_last=True)
    model = SALT(
        "vit_small_patch16_224", predictor_embed_dim=PRED["width"],
        predictor_depth=PRED["depth"], predictor_num_heads=PRED["num_heads"], **BLOCKS,
    )  # fmt: skip
    model.train()

    def batches() -> Iterator:
        while True:
            yield from loader

    def loss(b: Any) -> Any:
        return model(b[0]).loss

    return model, batches(), loss


def measure(row: str, corpus: Path, steps: int, warmup: int, batch: int) -> dict:
    """Time ``steps`` whole training iterations (batch wait included) of ``row``."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    opts = ROWS[row]
    if opts["side"] == "ours":
        model, batches, loss_fn = ours(corpus, batch, opts)
    else:
        model, batches, loss_fn = peer(corpus, batch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    waits, totals, flops = [], [], []
    for i in range(warmup + steps):
        counter = flop_counter() if i < warmup else None  # warm-up only
        start = time.perf_counter()
        b = next(batches)
        got = time.perf_counter()
        with counter or contextlib.nullcontext():
            loss = loss_fn(b)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # as both libraries do (peer_step.py)
        if counter is not None:
            flops.append(counter.get_total_flops() / batch / 1e9)
        else:
            waits.append(got - start)
            totals.append(time.perf_counter() - start)
    return {
        "images_per_s": batch * steps / sum(totals),
        "data_wait_share": sum(waits) / sum(totals),
        "gflop_per_image": sum(flops) / len(flops),
        "peak_rss_gb": peak_rss_gb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=4, help="rounds over the rows")
    parser.add_argument("--work", default=str(ROOT / ".cache" / "bench_end_to_end"))
    parser.add_argument("--row", default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    work = Path(args.work)
    if args.row is not None:
        result = measure(args.row, work / "corpus", args.steps, args.warmup, args.batch)
        print(json.dumps(result))
        return
    import pandas as pd
    from loading import make_corpus

    make_corpus(work, args.frames)
    runs = []
    for round_ in range(args.repeats):  # rows interleaved, so drift hits every row alike
        for name in ROWS:
            result = in_child(
                __file__, row=name, steps=args.steps, warmup=args.warmup, batch=args.batch,
                work=work,
            )  # fmt: skip
            runs.append({"row": name, "round": round_, **result})
            print(runs[-1], flush=True)
    pd.DataFrame(runs).to_csv(OUT / "end_to_end_runs.csv", index=False)
    table = summarise(pd.DataFrame(runs), ["row"])
    base = table.set_index("row").loc[PEER]
    for key, col in (("images_per_s", "speed_vs_peer"), ("gflop_per_image", "flops_vs_peer"),
                     ("peak_rss_gb", "memory_vs_peer")):  # fmt: skip
        table[col] = table[key] / base[key]
    table.to_csv(OUT / "end_to_end.csv", index=False)
    lines = [
        "# Pretraining throughput from frames on disk, loading included",
        "",
        f"{args.frames} frames of 256-px grayscale JPEG on local disk; ViT-S/16 at 224 px, "
        f"batch {args.batch}, predictor width 384 / depth 6 / 12 heads, 1 context block "
        "(0.85-1.0) and 4 target blocks (0.15-0.2), AdamW; one loader worker and 2 compute "
        f"threads (2 cores); {args.repeats} rounds over the rows (interleaved), medians "
        f"shown (every run in `end_to_end_runs.csv`); images/s over {args.steps} whole "
        f"iterations (waiting for the batch included) after {args.warmup} warm-up "
        "iterations, whose mean is the GFLOP/image (masks differ per batch); each row in "
        "its own process. Ours: one-pass predictor, bf16 teacher; selective checkpointing: "
        "`activation_checkpointing: selective`. "
        "Command: `.venv-bench/bin/python -m benchmarks.perf.end_to_end`.",
        "",
        "| pipeline | images/s | images/s, range | waiting for data | GFLOP/image | "
        "peak RSS (GB) | speed vs peer | FLOPs vs peer | memory vs peer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.row} | {r.images_per_s:.2f} | {r.images_per_s_range} | "
            f"{r.data_wait_share:.1%} | "
            f"{r.gflop_per_image:.1f} | {r.peak_rss_gb:.2f} | {r.speed_vs_peer:.2f}x | "
            f"{r.flops_vs_peer:.2f}x | {r.memory_vs_peer:.2f}x |"
        )
    record_env(OUT / "end_to_end.md")
    (OUT / "end_to_end.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
