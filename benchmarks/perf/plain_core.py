"""The default SALT training step before and after a code change, side by side in one
sitting: two source trees of usjepa (``--before`` and ``--after``, the latter this
checkout by default), each row in a process of its own that imports usjepa from its tree.

Rows: fp32 and bf16 autocast (the recipe's ``bf16-mixed``), the per-block and the
one-pass predictor. The step is each tree's default: ViT-S/16 at 224 px, 1 channel,
batch 16, predictor width 384 / depth 6 / 12 heads, a frozen fp32 teacher of the
student's size, 1 context block (0.85-1.0) and 4 target blocks (0.15-0.2) drawn per
image (so every batch's index sets are padded), AdamW, gradients freed after each
update, 2 threads. A row's batches go through the module as Lightning gives them
(``on_before_batch_transfer`` where the tree's module has one, then ``step_loss``).

images/s: the median of ``--steps`` timed steps after ``--warmup`` untimed ones; peak RSS:
the process's peak resident memory; peak tensor memory: the most bytes held by live
tensors over one untimed pass (``common.TensorMemory``). ``--repeats`` rounds over the
rows, interleaved; each figure the median of its rounds.

    git worktree add /tmp/before <commit>
    python -m benchmarks.perf.plain_core --before /tmp/before [--steps 3] [--repeats 2]
        [--batch 16] [--precisions fp32,bf16 autocast] [--out plain_core]

Writes ``results/<out>.{csv,md}`` and every run to ``<out>_runs.csv``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    TensorMemory,
    flop_counter,
    in_child,
    peak_rss_gb,
    record_env,
    results_dir,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = results_dir(__file__)
PRECISIONS = ("fp32", "bf16 autocast")
PREDICTORS = ("per block", "one pass")


def build(one_pass: bool) -> tuple[Any, Any]:
    """The SALT module and mask generator of a row, from whichever tree is imported."""
    import torch

    from usjepa.masks import MultiBlockMaskGenerator
    from usjepa.methods import SALTModule
    from usjepa.models import JEPAPredictor, ViTEncoder

    vit = {"img_size": 224, "patch_size": 16, "in_chans": 1}
    vit.update(embed_dim=384, depth=12, num_heads=6)
    predictor = JEPAPredictor(14, 384, 384, width=384, depth=6, num_heads=12, one_pass=one_pass)
    module = SALTModule(ViTEncoder(**vit, init_seed=0), predictor, ViTEncoder(**vit, init_seed=1))
    masks = MultiBlockMaskGenerator(
        14, num_targets=4, context_scale=(0.85, 1.0), target_scale=(0.15, 0.2)
    )
    torch.manual_seed(0)
    return module, masks


def measure(tree: str, precision: str, predictor: str, steps: int, warmup: int,
            memory: bool, batch_size: int = 16) -> dict[str, Any]:  # fmt: skip
    """Time the row's steps in this process, usjepa imported from ``tree``."""
    sys.path.insert(0, tree)
    import torch

    import usjepa

    assert Path(usjepa.__file__).resolve().is_relative_to(Path(tree).resolve()), usjepa.__file__
    torch.set_num_threads(2)
    tracker = TensorMemory() if memory else None
    if tracker is not None:
        tracker.__enter__()
    module, masks = build(predictor == "one pass")
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(1)
    total = 2 if memory else warmup + steps
    times, cpu_times, flops = [], [], 0.0
    for i in range(total):
        context, targets = masks(batch_size, g)
        batch: Any = {"image": torch.randn(batch_size, 1, 224, 224, generator=g)}
        batch.update(context=context, targets=targets)
        counter = flop_counter() if memory and i == 1 else None
        if counter is not None:
            counter.__enter__()
        start, cpu_start = time.perf_counter(), time.process_time()
        if hasattr(module, "on_before_batch_transfer"):
            batch = module.on_before_batch_transfer(batch, 0)
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16 autocast"):
            loss, _ = module.step_loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        if counter is not None:
            counter.__exit__(None, None, None)
            flops = counter.get_total_flops() / batch_size / 1e9
    if tracker is not None:
        tracker.__exit__(None, None, None)
        return {"peak_tensor_gb": tracker.peak / 1e9, "gflop_per_image": flops}
    return {
        "images_per_s": batch_size / statistics.median(times),
        "cpu_s_per_image": statistics.median(cpu_times) / batch_size,
        "peak_rss_gb": peak_rss_gb(),
    }


def revision(tree: str) -> str:
    """The tree's commit, with ``+changes`` when its work tree differs from it."""
    head = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "-C", tree, "status", "--porcelain", "usjepa"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return head + ("+changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="source tree of the code before the change")
    parser.add_argument("--after", default=str(ROOT))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tree")
    parser.add_argument("--precision")
    parser.add_argument("--predictor")
    parser.add_argument("--memory", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--out", default="plain_core", help="results file stem")
    args = parser.parse_args()
    if args.tree:  # a child: one row
        import json

        row = measure(args.tree, args.precision, args.predictor, args.steps, args.warmup,
                      bool(args.memory), args.batch)  # fmt: skip
        print(json.dumps(row))
        return
    if not args.before:
        parser.error("--before is required (a source tree of the code before the change)")
    import pandas as pd

    trees = {"before": args.before, "after": args.after}
    precisions = [p for p in args.precisions.split(",") if p]
    rows = [(t, p, q) for p in precisions for q in PREDICTORS for t in trees]
    runs = []
    for round_ in range(args.repeats):
        for tree, precision, predictor in rows:
            flags = dict(tree=trees[tree], precision=precision, predictor=predictor)
            row = in_child(__file__, steps=args.steps, warmup=args.warmup, batch=args.batch,
                           **flags)  # fmt: skip
            runs.append({"code": tree, "precision": precision, "predictor": predictor,
                         "round": round_, **row})  # fmt: skip
            print(runs[-1], flush=True)
    frame = pd.DataFrame(runs)
    OUT.mkdir(parents=True, exist_ok=True)
    frame.to_csv(OUT / f"{args.out}_runs.csv", index=False)
    key = ["precision", "predictor", "code"]
    summary = frame.groupby(key, sort=False).median(numeric_only=True).drop(columns="round")
    summary["images_per_s_range"] = frame.groupby(key, sort=False).images_per_s.agg(
        lambda s: f"{s.min():.2f}-{s.max():.2f}"
    )
    passes = [
        in_child(__file__, tree=trees[c], precision=p, predictor=q, memory=1, batch=args.batch)
        for p, q, c in summary.index
    ]
    summary["peak_tensor_gb"] = [r["peak_tensor_gb"] for r in passes]
    summary["gflop_per_image"] = [r["gflop_per_image"] for r in passes]
    # each round's after / before, so that the machine's drift between rounds cancels
    pairs = frame.pivot_table(
        index=["precision", "predictor", "round"],
        columns="code",
        values=["images_per_s", "cpu_s_per_image"],
    )
    level = ["precision", "predictor"]
    speed = (pairs["images_per_s"]["after"] / pairs["images_per_s"]["before"]).groupby(level)
    cpu = (pairs["cpu_s_per_image"]["before"] / pairs["cpu_s_per_image"]["after"]).groupby(level)
    summary = summary.reset_index()
    summary.to_csv(OUT / f"{args.out}.csv", index=False)
    lines = [
        "# The default SALT step before and after the plain core (issue 35)",
        "",
        f"before: `{revision(args.before)}`, after: `{revision(args.after)}`. ViT-S/16 at "
        f"224 px, batch {args.batch}, predictor 384 / 6 / 12 heads, fp32 teacher of the "
        "student's size, 1 context block and 4 target blocks drawn per image, AdamW, CPU, "
        "2 threads; "
        f"images/s the median of {args.steps} timed steps after {args.warmup}, each row in "
        f"its own process, {args.repeats} rounds interleaved, medians over the rounds. "
        f"Command: `python -m benchmarks.perf.plain_core --before <tree> --steps {args.steps} "
        f"--warmup {args.warmup} --repeats {args.repeats} --batch {args.batch} "
        f"--precisions '{args.precisions}' --out {args.out}`.",
        "",
        "CPU s/image: the process's CPU time per image (both threads), which other tenants "
        "of the machine move less than wall time. 'after / before': each round's ratio of "
        "the two codes' figures (images/s; for CPU time, before over after, so above 1 is "
        "faster), then the median and range over the rounds. GFLOP/image: one training step "
        "(`torch.utils.flop_counter`, the CPU's fused attention counted); peak tensor "
        "memory: live tensors over two steps, from the allocator's record (one untimed run "
        "each).",
        "",
        "| precision | predictor | code | images/s | images/s, range | speed after / before "
        "| CPU s/image | CPU time before / after | GFLOP/image | peak RSS (GB) "
        "| peak tensor memory (GB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in summary.iterrows():
        key = (r.precision, r.predictor)
        ratio = cpu_ratio = "1.00x"
        if r.code == "after":
            s, c = speed.get_group(key), cpu.get_group(key)
            ratio = f"{s.median():.2f}x ({s.min():.2f}-{s.max():.2f}x)"
            cpu_ratio = f"{c.median():.2f}x ({c.min():.2f}-{c.max():.2f}x)"
        lines.append(
            f"| {r.precision} | {r.predictor} | {r.code} | {r.images_per_s:.2f} | "
            f"{r.images_per_s_range} | {ratio} | {r.cpu_s_per_image:.3f} | {cpu_ratio} | "
            f"{r.gflop_per_image:.1f} | {r.peak_rss_gb:.2f} | {r.peak_tensor_gb:.2f} |"
        )
    record_env(OUT / f"{args.out}.md")
    (OUT / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
