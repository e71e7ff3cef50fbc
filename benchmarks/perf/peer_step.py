"""Our training steps side by side with the public implementations, in one run.

SALT against stable-pretraining's ``SALT`` (also both under bf16 autocast); I-JEPA
against lightly's timm I-JEPA modules (the predictor ``IJEPAPredictorTIMM``, the encoders
``MaskedVisionTransformerTIMM`` and ``update_momentum`` for the EMA). Both peers come
with the optional ``[bench]`` extra, installed apart by ``make bench-peers`` (its own venv,
``.venv-bench``: stable-pretraining adds callbacks to every Lightning Trainer).

Settings of issue 13: ViT-S/16 at 224 px, batch 16, predictor width 384 / depth 6 / 12
heads, one context block (0.85-1.0) and four target blocks (0.15-0.2), a frozen teacher
(SALT) or an EMA target encoder (I-JEPA) of the student's size, AdamW. Every row runs in
its own process so peak memory is its own; every process imports the same libraries
(ours and both peers) before building anything, so the import baseline is the same in
every row. The masks are ours, drawn once per step with one seed and shared by the whole
batch (the peers share one draw across the batch): the peer gets the same context and
the union of the same target blocks.

Reported per row: images/s (median of the timed steps), GFLOP per image of one training
step (``torch.utils.flop_counter``, attention included, the first step, which is also a
warm-up), peak tensor memory (the most bytes held by live tensors from building the
models to the end of the second step, ``common.TensorMemory``), peak resident memory of
the process, and the resident memory once the models are built. Beside them, the row's
roofline: the images/s it would reach if every counted FLOP ran at the matmul peak of
its precision, fp32 and bf16 peaks measured in the row's own process right after its
timed steps (``common.cpu_matmul_peak``: the better of ``torch.mm`` and oneDNN); a bf16
teacher's FLOPs are counted apart for it.
The share of the roofline a row reaches says how much speed is left at its FLOPs.

    python -m benchmarks.perf.peer_step [--steps 8] [--warmup 4] [--rows salt] [--repeats 3]

Writes ``results/perf/peer_step/peer_step.{csv,md,json}`` (medians over ``--repeats``
interleaved rounds) and ``peer_step_runs.csv`` (every run of this sitting).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    GB,
    TensorMemory,
    cpu_matmul_peak,
    flop_counter,
    interleaved_with_memory,
    peak_rss_gb,
    record_env,
    results_dir,
    rss_gb,
    summarise,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = results_dir(__file__)
VIT_S = {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6}
PRED = {"width": 384, "depth": 6, "num_heads": 12}

#: row name -> (family, builder name, options); the builders are below
ROWS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "usjepa SALT, one pass": ("salt", "ours_salt", {"one_pass": True}),
    "usjepa SALT, one pass, bf16 teacher": (
        "salt",
        "ours_salt",
        {"one_pass": True, "teacher_dtype": "bfloat16"},
    ),
    "usjepa SALT, one pass, bf16 teacher, selective checkpointing": (
        "salt",
        "ours_salt",
        {"one_pass": True, "teacher_dtype": "bfloat16", "activation_checkpointing": "selective"},
    ),
    "stable-pretraining SALT": ("salt", "peer_salt", {}),
    "usjepa SALT, one pass, bf16 autocast": (
        "salt_amp",
        "ours_salt",
        {"one_pass": True, "amp": True},
    ),
    "stable-pretraining SALT, bf16 autocast": ("salt_amp", "peer_salt", {"amp": True}),
    "usjepa I-JEPA, per block": ("ijepa", "ours_ijepa", {"one_pass": False}),
    "usjepa I-JEPA, one pass": ("ijepa", "ours_ijepa", {"one_pass": True}),
    "lightly I-JEPA (timm)": ("ijepa", "peer_ijepa", {}),
}
PEERS = {
    "salt": "stable-pretraining SALT",
    "salt_amp": "stable-pretraining SALT, bf16 autocast",
    "ijepa": "lightly I-JEPA (timm)",
}


def draw_masks(steps: int, batch: int) -> list[tuple[Any, Any]]:
    """One draw of our multi-block masks per step, shared by the batch: context ``[B, K]``
    and targets ``[B, 4, T]`` (padded with -1 where blocks differ in size)."""
    import torch

    from usjepa.masks import MultiBlockMaskGenerator

    gen = MultiBlockMaskGenerator(
        14, num_targets=4, context_scale=(0.85, 1.0), target_scale=(0.15, 0.2)
    )
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(steps):
        context, targets = gen(1, g)
        out.append((context.expand(batch, -1), targets.expand(batch, -1, -1)))
    return out


def ours_salt(opts: dict[str, Any]) -> tuple[Any, Callable[[Any, Any, Any], Any]]:
    from usjepa.methods import SALTModule
    from usjepa.models import JEPAPredictor, ViTEncoder

    chans = opts.get("in_chans", 1)
    module = SALTModule(
        ViTEncoder(**VIT_S, in_chans=chans, init_seed=0),
        JEPAPredictor(14, 384, 384, **PRED, one_pass=opts["one_pass"]),
        ViTEncoder(**VIT_S, in_chans=chans, init_seed=1),
        teacher_dtype=opts.get("teacher_dtype"),
        activation_checkpointing=opts.get("activation_checkpointing", False),
    )

    def loss(images: Any, context: Any, targets: Any) -> Any:
        return module.step_loss({"image": images, "context": context, "targets": targets})[0]

    return module, loss


def ours_ijepa(opts: dict[str, Any]) -> tuple[Any, Callable[[Any, Any, Any], Any]]:
    from usjepa.methods import IJEPAModule
    from usjepa.models import JEPAPredictor, ViTEncoder

    module = IJEPAModule(
        ViTEncoder(**VIT_S, in_chans=1, init_seed=0),
        JEPAPredictor(14, 384, 384, **PRED, one_pass=opts["one_pass"]),
    )

    def loss(images: Any, context: Any, targets: Any) -> Any:
        return module.step_loss({"image": images, "context": context, "targets": targets})[0]

    return module, loss


def peer_salt(opts: dict[str, Any]) -> tuple[Any, Callable[[Any, Any, Any], Any]]:
    import torch
    from stable_pretraining.methods.salt import SALT

    model = SALT(
        "vit_small_patch16_224", predictor_embed_dim=PRED["width"],
        predictor_depth=PRED["depth"], predictor_num_heads=PRED["num_heads"],
        num_targets=4, context_scale=(0.85, 1.0), target_scale=(0.15, 0.2),
    )  # fmt: skip
    model.train()
    current: dict[str, Any] = {}
    # the peer draws its masks inside forward; give it ours (same for the whole batch)
    model._generate_masks = lambda h, w, device: current["masks"]  # type: ignore[method-assign]

    def loss(images: Any, context: Any, targets: Any) -> Any:
        union = torch.unique(targets[0][targets[0] >= 0])
        current["masks"] = (context[0], union)
        return model(images).loss

    return model, loss


def peer_ijepa(opts: dict[str, Any]) -> tuple[Any, Callable[[Any, Any, Any], Any]]:
    import copy

    import timm
    import torch
    import torch.nn.functional as F
    from lightly.models import utils as lightly_utils
    from lightly.models.modules import IJEPAPredictorTIMM, MaskedVisionTransformerTIMM
    from torch import nn

    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    model = nn.Module()
    model.encoder = MaskedVisionTransformerTIMM(vit=vit)
    model.target = copy.deepcopy(model.encoder).requires_grad_(False)
    model.predictor = IJEPAPredictorTIMM(
        num_patches=196, depth=PRED["depth"], mlp_dim=384,
        predictor_embed_dim=PRED["width"], num_heads=PRED["num_heads"],
    )  # fmt: skip

    def loss(images: Any, context: Any, targets: Any) -> Any:
        # lightly's masks: one [B, K] context and a list of [B, T] target blocks (equal
        # lengths within a block: ours are shared by the batch, so cut nothing)
        blocks = [t[:, t[0] >= 0] for t in targets.unbind(1)]
        with torch.no_grad():
            h = model.target.encode(images)[:, 1:]  # full image, drop the class token
            h = F.layer_norm(h, h.shape[-1:])
            h = torch.cat([lightly_utils.apply_masks(h, [b]) for b in blocks])
        # lightly's idx_keep counts the class token as token 0: keep it, shift the patches
        keep = torch.cat([torch.zeros_like(context[:, :1]), context + 1], 1)
        z = model.encoder.encode(images, idx_keep=keep)[:, 1:]
        z = model.predictor(z, [context], blocks)
        return F.smooth_l1_loss(z, h)

    model.after_step = lambda: lightly_utils.update_momentum(model.encoder, model.target, 0.996)
    return model, loss


#: the library each builder needs (``measure(..., own_imports=True)`` imports only it)
LIBRARIES = {
    "ours_salt": "usjepa.methods",
    "ours_ijepa": "usjepa.methods",
    "peer_salt": "stable_pretraining.methods.salt",
    "peer_ijepa": "lightly.models.modules",
}


def measure(
    row: str,
    steps: int,
    threads: int,
    batch: int,
    memory: bool,
    warmup: int = 4,
    own_imports: bool = False,
) -> dict[str, Any]:
    """Time ``steps`` training steps of ``row`` in this process after ``warmup`` untimed
    ones (at least two: the first is counted for FLOPs, the second holds the optimiser
    state); with ``memory``, run the first two under :class:`common.TensorMemory` instead
    (the profiler's own buffers would swell the resident memory of a timed run) and return
    the peak tensor memory only. Every row imports the three libraries first, so the
    import baseline of the resident memory is the same in each; ``own_imports`` imports
    only the row's own library, as a user of that library alone would."""
    import importlib

    family, builder, opts = ROWS[row]
    for library in {LIBRARIES[builder]} if own_imports else sorted(set(LIBRARIES.values())):
        importlib.import_module(library)
    imported_rss = rss_gb()
    import torch

    torch.set_num_threads(threads)
    chans = 3 if builder.startswith("peer") else opts.get("in_chans", 1)
    warmup = max(warmup, 2)
    masks = draw_masks(steps + warmup, batch)
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(batch, chans, 224, 224, generator=g) for _ in range(steps + warmup)]
    torch.manual_seed(0)
    tracker = TensorMemory() if memory else contextlib.nullcontext()
    with tracker:  # models, optimiser state and two steps
        model, loss_fn = globals()[builder](opts)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        ema = getattr(model, "after_step", None)
        if family == "ijepa" and ema is None:  # ours: the module's own EMA update

            def ema() -> None:
                model.update_target(0.996)

        def step(i: int) -> None:
            with torch.autocast("cpu", torch.bfloat16, enabled=bool(opts.get("amp"))):
                loss = loss_fn(images[i], *masks[i])
            # both libraries free the gradients right after the update (stable-pretraining
            # in its training_step, ours in PretrainModule.optimizer_step)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema()

        built_rss = rss_gb()
        with flop_counter() as counter:
            step(0)  # also a warm-up
        step(1)  # a step with the optimiser state held
    if isinstance(tracker, TensorMemory):
        return {"peak_tensor_gb": tracker.peak / GB}
    for i in range(2, warmup):  # the C allocator's heap still grows in these (page faults)
        step(i)
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(warmup, steps + warmup):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    gflop = counter.get_total_flops() / batch / 1e9
    bf16_gflop = gflop if opts.get("amp") else 0.0  # autocast: every product in bf16
    if opts.get("teacher_dtype") == "bfloat16":  # only the frozen teacher runs in bf16
        with flop_counter() as teacher_counter:
            model.compute_targets(images[0], masks[0][1])
        bf16_gflop = teacher_counter.get_total_flops() / batch / 1e9
    peak_fp32, peak_bf16 = cpu_matmul_peak(), cpu_matmul_peak(torch.bfloat16)
    roofline = 1 / ((gflop - bf16_gflop) / peak_fp32 + bf16_gflop / peak_bf16)
    targets = masks[0][1][0]
    return {
        "family": family,
        "images_per_s": batch / statistics.median(times),
        "gflop_per_image": gflop,
        "bf16_gflop_per_image": bf16_gflop,
        "matmul_peak_fp32_gflops": peak_fp32,
        "matmul_peak_bf16_gflops": peak_bf16,
        "roofline_images_per_s": roofline,
        "of_roofline": batch / statistics.median(times) / roofline,
        "peak_rss_gb": peak_rss_gb(),
        "gb_bytes": GB,  # the unit of the GB figures (older runs: 10^6 KiB, and no such key)
        "imported_rss_gb": imported_rss,
        "built_rss_gb": built_rss,
        "own_imports": own_imports,
        "timed_page_faults_per_step": faults / steps,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "context_tokens": int(masks[0][0].shape[1]),
        "target_tokens": int((targets >= 0).sum()),
        "trainable_params_m": sum(p.numel() for p in params) / 1e6,
    }


def in_gb(run: dict[str, Any]) -> dict[str, Any]:
    """A recorded run with its RSS figures in :data:`common.GB`: runs recorded before
    2026-11-29 have no ``gb_bytes`` and gave them in 10^6 KiB."""
    unit = run.get("gb_bytes")
    if unit is None or unit != unit:  # absent, or NaN in a CSV that mixes both
        unit = 1024 * 1e6
    scale = unit / GB
    return {**run, "gb_bytes": GB, "peak_rss_gb": run["peak_rss_gb"] * scale,
            "built_rss_gb": run["built_rss_gb"] * scale}  # fmt: skip


def roofline_note(table: Any, peer: dict[str, Any]) -> str:
    """The roofline paragraph of the report, from the measured figures: the peaks seen,
    and what share of each of our SALT rows' rooflines 1.2x the fp32 peer's speed is."""
    lo32, hi32 = table.matmul_peak_fp32_gflops.min(), table.matmul_peak_fp32_gflops.max()
    lo16, hi16 = table.matmul_peak_bf16_gflops.min(), table.matmul_peak_bf16_gflops.max()
    text = (
        "Roofline: the images/s a row would reach if every counted FLOP ran at the matmul "
        "peak of its precision (a 2048 x 2048 matmul, the faster of `torch.mm` and "
        "oneDNN's linear op, measured in the row's own process right after its timed "
        f"steps: fp32 {lo32:.0f}-{hi32:.0f} GFLOP/s, bf16 "
        f"{lo16:.0f}-{hi16:.0f} GFLOP/s over the rows). Under bf16 autocast every FLOP is "
        "put at the bf16 peak; with a bf16 teacher, the teacher's FLOPs (counted apart) "
        "are."
    )
    if "salt" in peer:
        target = 1.2 * peer["salt"].images_per_s
        ours = table[(table.family == "salt") & (table.row != PEERS["salt"])]
        needs = "; ".join(
            f"{r.row}: {target / r.roofline_images_per_s:.0%} (it reaches {r.of_roofline:.0%})"
            for _, r in ours.iterrows()
        )
        text += (
            f" The fp32 SALT peer reaches {peer['salt'].of_roofline:.0%} of its roofline. "
            f"1.2x its images/s ({target:.2f}) is this share of each of our SALT rows' "
            f"rooflines: {needs}."
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run")
    parser.add_argument(
        "--warmup", type=int, default=4, help="untimed steps before them (at least 2)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--rows", default="salt,ijepa,salt_amp", help="families to run: salt, ijepa, salt_amp"
    )
    parser.add_argument(
        "--reuse",
        default=None,
        help="a previous run's output, or its runs file (peer_step_runs.csv): its rows of "
        "the families not run now go in the table",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds over the rows (interleaved); medians"
    )
    parser.add_argument(
        "--from-runs",
        default=None,
        help="a runs CSV written by this script (peer_step_runs.csv): rebuild the tables "
        "from its runs of the rows the script has now, measuring nothing",
    )
    parser.add_argument("--row", default=None, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--memory", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row is not None:
        figures = measure(
            args.row, args.steps, args.threads, args.batch, bool(args.memory), args.warmup
        )
        print(json.dumps(figures))
        return
    try:
        import lightly  # noqa: F401
        import stable_pretraining  # noqa: F401
    except ImportError as err:
        sys.exit(f"peer_step: {err.name} is not installed; run "
                 "`make bench-peers` (its own venv, .venv-bench)")  # fmt: skip
    import pandas as pd

    families = set(args.rows.split(","))
    rows = []
    if args.reuse and args.reuse.endswith(".csv"):  # a runs file (peer_step_runs.csv)
        prior = pd.read_csv(args.reuse)
        rows += [in_gb(r) for r in prior[~prior.family.isin(families)].to_dict("records")]
    elif args.reuse:  # each family's rows (and so its ratios) still come from one run
        import ast

        for line in Path(args.reuse).read_text().splitlines():
            if line.startswith("{'row'"):
                row = ast.literal_eval(line)
                if row["family"] not in families:
                    rows.append(in_gb(row))
    names = [name for name, (family, _, _) in ROWS.items() if family in families]
    if args.from_runs:  # the same tables from recorded runs (rows since removed left out)
        recorded = pd.read_csv(args.from_runs)
        runs = [in_gb(r) for r in recorded[recorded.row.isin(names)].to_dict("records")]
        args.repeats = int(recorded["round"].max()) + 1
        args.steps = int(recorded["timed_steps"].iloc[0])  # as the runs were recorded
        args.warmup = int(recorded["warmup_steps"].iloc[0])
    else:
        runs = interleaved_with_memory(
            __file__, names, args.repeats, "row", steps=args.steps, warmup=args.warmup,
            threads=args.threads, batch=args.batch,
        )  # fmt: skip
        pd.DataFrame(runs).to_csv(OUT / "peer_step_runs.csv", index=False)
    by = ["row", "family"]
    table = pd.concat([summarise(pd.DataFrame(rows), by), summarise(pd.DataFrame(runs), by)])
    table = table.reset_index(drop=True)
    peer = {f: table[table.row == PEERS[f]].iloc[0] for f in set(table.family)}
    for col, key in (("speed", "images_per_s"), ("flops", "gflop_per_image"),
                     ("memory", "peak_rss_gb"), ("tensor_memory", "peak_tensor_gb")):  # fmt: skip
        table[f"{col}_vs_peer"] = [r[key] / peer[r.family][key] for _, r in table.iterrows()]
    table.to_csv(OUT / "peer_step.csv", index=False)
    settings = {"threads": args.threads, "batch": args.batch, "timed_steps": args.steps,
                "warmup_steps": args.warmup,
                "model": "ViT-S/16 224 px", "predictor": PRED}  # fmt: skip
    (OUT / "peer_step.json").write_text(
        json.dumps({"settings": settings, "rows": table.to_dict("records")}, indent=1)
    )
    lines = [
        "# Training step side by side with stable-pretraining (SALT) and lightly (I-JEPA)",
        "",
        f"ViT-S/16 at 224 px, batch {args.batch}, predictor width 384 / depth 6 / 12 heads, "
        "1 context block (0.85-1.0) and 4 target blocks (0.15-0.2), the same masks for both "
        f"sides, AdamW, CPU, {args.threads} threads; images/s is the median of "
        f"{args.steps} timed steps after {max(args.warmup, 2)} untimed ones (the C "
        "allocator's heap grows through the first few steps; the page faults per timed "
        "step are in a column); every row in its own process with the same imports; "
        f"{args.repeats} rounds over the rows, interleaved, each figure the median of the "
        "rounds (its images/s range over the rounds beside it; every run in "
        "`peer_step_runs.csv`). "
        "Command: `python -m benchmarks.perf.peer_step`. Rows in bf16 autocast (Lightning's "
        "`bf16-mixed`) are compared with the peer in bf16 autocast.",
        "",
        "GFLOP/image: one training step, `torch.utils.flop_counter` with the CPU's fused "
        "attention counted too (`benchmarks/common.py`). Peak tensor memory: the most bytes "
        "held by live tensors from building the models to the end of the second step (the "
        "optimiser state held), from the CPU allocator's "
        "record, the CPU's analog of `torch.cuda.max_memory_allocated`. Peak RSS: the "
        "process's peak resident memory, which also holds the interpreter and every "
        "imported library (the 'models built' column less the models) and the heap the C "
        "allocator keeps after tensors are freed. GB: 10^9 bytes.",
        "",
        "Every row steps as both SALT libraries train: forward, backward, update, then the "
        "gradients freed (stable-pretraining's `training_step`; ours, "
        "`PretrainModule.optimizer_step`).",
        "",
        "Both sides run their linear layers through torch's own path (`F.linear`).",
        "",
    ]
    if "roofline_images_per_s" in table:
        lines += [roofline_note(table, peer), ""]
    if args.reuse:
        lines += [
            "Families run in this sitting: " + ", ".join(sorted(families)) + "; the other "
            f"families' rows come from the run before it (`{Path(args.reuse).name}`; each "
            "family's rows, and so its ratios, from one run).",
            "",
        ]
    if args.from_runs:
        lines += [
            f"Rebuilt by `--from-runs` from the runs recorded in `{Path(args.from_runs).name}`, "
            "measuring nothing; runs there of rows the script no longer has are left out of "
            "these tables.",
            "",
        ]
    lines += [
        "| row | images/s | images/s, range | GFLOP/image | peak tensor memory (GB) | "
        "peak RSS (GB) | RSS, models built (GB) | speed vs peer | FLOPs vs peer | "
        "tensor memory vs peer | RSS vs peer | roofline images/s | of roofline | "
        "page faults / timed step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        rng = r.get("images_per_s_range")
        roof, share = r.get("roofline_images_per_s"), r.get("of_roofline")
        faults = r.get("timed_page_faults_per_step", float("nan"))
        lines.append(
            f"| {r.row} | {r.images_per_s:.2f} | {rng if isinstance(rng, str) else '-'} | "
            f"{r.gflop_per_image:.1f} | {r.peak_tensor_gb:.2f} | "
            f"{r.peak_rss_gb:.2f} | {r.built_rss_gb:.2f} | {r.speed_vs_peer:.2f}x | "
            f"{r.flops_vs_peer:.2f}x | {r.tensor_memory_vs_peer:.2f}x | {r.memory_vs_peer:.2f}x | "
            + ("- | - |" if pd.isna(roof) else f"{roof:.2f} | {share:.0%} |")
            + (" - |" if pd.isna(faults) else f" {faults:,.0f} |")
        )
    record_env(OUT / "peer_step.md")
    (OUT / "peer_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
