"""Corpus loading speed per core: decode + augment + mask generation, files vs shards.

Builds a corpus of 256-px grayscale JPEG frames with ``usjepa data build`` (from
synthetic B-mode frames, scan masks detected), writes litdata shards of it with
``usjepa data shard``, then measures frames per second on one core (torch and OpenCV
limited to one thread, no DataLoader workers, CPU time of this process) for:

* ``decode``: JPEG decoding alone (the reference the other rows are compared with);
* ``files``: :class:`usjepa.data.CorpusDataset` (read file, decode, read scan mask,
  random resized crop to 224, per-patch scan cover) plus :class:`usjepa.data.MaskCollator`
  (USrc multi-block masks on the 14x14 grid, batches of 64), configured as
  :class:`usjepa.data.CorpusDataModule` does: batches stay uint8 and are normalised on
  the device after transfer, so normalisation is not in these figures;
* ``shards``: the same from :class:`usjepa.data.shards.ShardCorpusDataset`;
* ``masks``: mask generation alone, masks per second for the 14x14 grid;
* ``files_albumentations``: ``files`` with the crop done by albumentations'
  ``RandomResizedCrop`` on the frame and its scan mask together (same scale, ratio and
  interpolation rule: area when shrinking, linear when enlarging), the candidate the
  house-keeping issue asked to measure before adopting it;
* ``crop`` / ``crop_albumentations``: the crop and resize of a decoded frame and its
  scan mask alone, ours and albumentations'.

Writes ``results/perf/loading/loading.{md,csv}``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from benchmarks.common import record_env, results_dir
from usjepa.data.batches import FrameTransform, MaskCollator
from usjepa.data.corpus import CorpusDataset
from usjepa.data.frames import load_frame_table
from usjepa.data.ingest import build_dataset
from usjepa.data.shards import ShardCorpusDataset, write_shards
from usjepa.data.synthetic import draw_patient, render_frame
from usjepa.masks import MultiBlockMaskGenerator

ROOT = Path(__file__).resolve().parents[2]


def make_corpus(work: Path, n: int) -> Path:
    raw = work / "raw"
    if not (work / "corpus" / "manifest.parquet").exists():
        shutil.rmtree(work, ignore_errors=True)
        raw.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(n):
            if i % 8 == 0:
                patient = draw_patient(320, rng)
            frame, _ = render_frame(patient, int(rng.integers(6)), rng)
            cv2.imwrite(str(raw / f"{i:05d}.png"), frame)
        build_dataset(raw, work / "corpus", "synthetic", size=256, image_format="jpg", workers=2)
        write_shards(work / "corpus" / "manifest.parquet", work / "shards", val_fraction=0.0)
    return work / "corpus"


class AlbumentationsTransform(FrameTransform):
    """:class:`FrameTransform` with albumentations doing the paired crop."""

    def __init__(self, img_size: int, crop_scale: tuple[float, float], seed: int, grid: int):
        import albumentations as A

        super().__init__(img_size, crop_scale, seed, grid)
        crop = A.RandomResizedCrop(
            size=(img_size, img_size),
            scale=crop_scale,
            ratio=(0.75, 4 / 3),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_LINEAR,
            area_for_downscale="image_mask",
        )
        self.crop = A.Compose([crop], seed=seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int | None = None) -> dict:
        """The sample dict of :class:`FrameTransform`, the crop by albumentations."""
        rng = self.rng() if seed is None else np.random.default_rng(seed)
        self.crop.set_random_seed(int(rng.integers(2**31)))
        out = self.crop(image=image, mask=mask)
        g = (self.grid_size, self.grid_size)
        cover = cv2.resize(out["mask"], g, interpolation=cv2.INTER_AREA).astype(np.float32)
        return {
            "image": torch.from_numpy(out["image"])[None],
            "mask_seed": int(rng.integers(2**62)),
            "scan_cover": torch.from_numpy(cover / 255),
        }


def per_core(fn, n: int) -> float:
    start = time.process_time()
    fn()
    return n / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=2048)
    parser.add_argument("--work", default=str(ROOT / ".cache" / "bench_loading"))
    parser.add_argument("--out", default=str(results_dir(__file__) / "loading"))
    args = parser.parse_args()
    work = Path(args.work)
    corpus = make_corpus(work, args.frames)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    table = load_frame_table(corpus / "manifest.parquet")
    n = len(table)
    blobs = [(corpus / table.frame_path[i]).read_bytes() for i in range(n)]
    # as CorpusDataModule configures them: per-patch scan cover, uint8 batches (normalised
    # on the device after transfer)
    transform = FrameTransform(224, (0.3, 1.0), seed=0, grid_size=14)
    collate = MaskCollator(MultiBlockMaskGenerator(14), scan_region=True, normalize=False)
    files = CorpusDataset(corpus, table, np.arange(n), transform)

    def decode() -> None:
        for b in blobs:
            cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE)

    def batches(samples) -> None:
        buf = []
        for s in samples:
            buf.append(s)
            if len(buf) == 64:
                collate(buf)
                buf = []

    def from_files() -> None:
        batches(files[i] for i in range(n))

    alb_files = CorpusDataset(
        corpus, table, np.arange(n), AlbumentationsTransform(224, (0.3, 1.0), 0, 14)
    )

    def from_files_albumentations() -> None:
        batches(alb_files[i] for i in range(n))

    decoded = [files.load(i) for i in range(256)]

    def crop_with(t: FrameTransform) -> None:
        for i in range(4 * len(decoded)):
            image, mask = decoded[i % len(decoded)]
            t(image, mask, seed=i)

    alb_transform = AlbumentationsTransform(224, (0.3, 1.0), 0, 14)

    shard_dir = next(p for p in (work / "shards").iterdir() if p.is_dir())
    shards = ShardCorpusDataset(str(shard_dir), transform, shuffle=True, seed=0)

    def from_shards() -> None:
        batches(iter(shards))

    valid = torch.ones(64, 14, 14, dtype=torch.bool)
    valid[:, :, :3] = False
    gen = MultiBlockMaskGenerator(14)

    def masks() -> None:
        g = torch.Generator().manual_seed(0)
        for _ in range(50):
            gen(64, g, valid)

    rows = []
    for repeat in range(2):  # the first pass warms caches; both are recorded
        rates = {
            "decode": per_core(decode, n),
            "files": per_core(from_files, n),
            "shards": per_core(from_shards, len(shards)),
            "masks": per_core(masks, 50 * 64),
            "files_albumentations": per_core(from_files_albumentations, n),
            "crop": per_core(lambda: crop_with(transform), 4 * len(decoded)),
            "crop_albumentations": per_core(lambda: crop_with(alb_transform), 4 * len(decoded)),
        }
        rows += [
            {"pass": repeat, "what": k, "per_second_per_core": round(v)} for k, v in rates.items()
        ]
        print(rates)
    frame = pd.DataFrame(rows)
    last = frame[frame["pass"] == 1].set_index("what")["per_second_per_core"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_suffix(".csv"), index=False)
    lines = [
        "# Corpus loading speed per core",
        "",
        f"{n} frames, 256-px grayscale JPEG built by `usjepa data build`; output 224 px, "
        "USrc multi-block masks on the 14x14 grid, batches of 64 (uint8; normalised on the "
        "device after transfer); one thread, CPU time of the whole process.",
        "",
        "| pipeline | per second per core | vs decode alone |",
        "|---|---|---|",
    ]
    labels = {
        "decode": "JPEG decode alone (frames)",
        "files": "files: read + decode + scan mask + crop + masks (frames)",
        "shards": "shards: the same from litdata shards (frames)",
        "masks": "mask generation alone (masks)",
    }
    for key, label in labels.items():
        lines.append(f"| {label} | {last[key]:,} | {last[key] / last['decode']:.2f} |")
    lines += ["", "Bars: shards >= 1,500 frames/s per core; masks >= 2,000 masks/s per core."]
    alb = {
        "files": ("files, the whole pipeline (frames)", "files_albumentations"),
        "crop": ("crop + resize of a decoded frame and its mask (frames)", "crop_albumentations"),
    }
    lines += [
        "",
        "## The paired crop: ours or albumentations'",
        "",
        "albumentations' `RandomResizedCrop` on frame and scan mask together (same scale, "
        "ratio and interpolation rule), measured in the same run:",
        "",
        "| what | ours | albumentations | albumentations / ours |",
        "|---|---|---|---|",
    ]
    for key, (label, other) in alb.items():
        lines.append(
            f"| {label} | {last[key]:,} | {last[other]:,} | {last[other] / last[key]:.2f} |"
        )
    record_env(out.with_suffix(".md"))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
