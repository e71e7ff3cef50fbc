"""Fast paths of the SALT training step, each measured before and after in one run.

Settings of issue 13 (the comparison with stable-pretraining's SALT): ViT-S/16 student at
224 px, batch 16, predictor width 384 / depth 6 / 12 heads, one context block
(scale 0.85-1.0) and four target blocks (0.15-0.2) on the 14 x 14 grid, a frozen teacher
of the student's size, AdamW, CPU threads as given. Every variant runs in its own process
(so peak memory is its own), on the same seeded batches, and reports images/s (median
of the timed steps), GFLOP per image of one training step (``torch.utils.flop_counter``,
attention included), peak tensor memory (``common.TensorMemory``, in a run of its own),
the process's peak resident memory, and the host reads of device memory one step makes
(:class:`usjepa.models.host_reads.HostReads`: each one a host-device synchronisation on a
GPU). Batches are planned on the host as Lightning does it (``on_before_batch_transfer``)
unless a row says otherwise. ``--repeats`` rounds run over the rows interleaved, so this
machine's drift hits every row alike; each figure is the median of the rounds.

    python benchmarks/fast_paths.py [--steps 4] [--threads 2] [--repeats 2]

Writes ``benchmarks/results/fast_paths.{csv,md}`` and every run to
``fast_paths_runs.csv``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import GB, TensorMemory, flop_counter, interleaved_with_memory, peak_rss_gb, summarise

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"

#: variant name -> (options, the variant it is measured against); options: predictor
#: ``one_pass``, SALT ``teacher_dtype``, ``activation_checkpointing``, ``compile_blocks``,
#: ``fused`` AdamW, ``no_grad_teacher`` (the teacher under no_grad, as before
#: inference_mode), ``pack`` (False: padded tokens run through the blocks, as before
#: ``usjepa.models.packed``), ``plan`` (False: the batch is not planned on the host, so
#: the step reads its index sets itself), ``math_attention`` (SDPA's math backend, the
#: unfused softmax(QK^T)V, instead of the fused kernel); ``same_as``: the same code as
#: another row, which is measured once and shown on both
VARIANTS: dict[str, tuple[dict, str | None]] = {
    "per block (I-JEPA)": ({"one_pass": False}, None),
    "one pass": ({"one_pass": True}, "per block (I-JEPA)"),
    "one pass, teacher under no_grad": ({"one_pass": True, "no_grad_teacher": True}, None),
    "one pass, teacher under inference_mode": (
        {"same_as": "one pass"},
        "one pass, teacher under no_grad",
    ),  # fmt: skip
    "one pass + bf16 teacher": ({"one_pass": True, "teacher_dtype": "bfloat16"}, "one pass"),
    "one pass + bf16 teacher, padding through the blocks": (
        {"one_pass": True, "teacher_dtype": "bfloat16", "pack": False},
        None,
    ),  # fmt: skip
    "one pass + bf16 teacher, real tokens only": (
        {"same_as": "one pass + bf16 teacher"},
        "one pass + bf16 teacher, padding through the blocks",
    ),  # fmt: skip
    "one pass + bf16 teacher, batch not planned on the host": (
        {"one_pass": True, "teacher_dtype": "bfloat16", "plan": False},
        None,
    ),  # fmt: skip
    "one pass + bf16 teacher, batch planned on the host": (
        {"same_as": "one pass + bf16 teacher"},
        "one pass + bf16 teacher, batch not planned on the host",
    ),  # fmt: skip
    "one pass + bf16 teacher + math attention": (
        {"one_pass": True, "teacher_dtype": "bfloat16", "math_attention": True},
        "one pass + bf16 teacher",
    ),  # fmt: skip
    "one pass + bf16 teacher + fused AdamW": (
        {"one_pass": True, "teacher_dtype": "bfloat16", "fused": True},
        "one pass + bf16 teacher",
    ),  # fmt: skip
    "one pass + bf16 teacher + activation checkpointing": (
        {"one_pass": True, "teacher_dtype": "bfloat16", "activation_checkpointing": True},
        "one pass + bf16 teacher",
    ),  # fmt: skip
    "one pass + bf16 teacher + selective checkpointing": (
        {"one_pass": True, "teacher_dtype": "bfloat16", "activation_checkpointing": "selective"},
        "one pass + bf16 teacher",
    ),  # fmt: skip
    "one pass + bf16 teacher + compiled blocks": (
        {"one_pass": True, "teacher_dtype": "bfloat16", "compile_blocks": True},
        "one pass + bf16 teacher",
    ),  # fmt: skip
}


def measure(opts: dict, steps: int, threads: int, batch: int, memory: bool = False) -> dict:
    """Time ``steps`` SALT training steps in this process; with ``memory``, run two steps
    under :class:`common.TensorMemory` instead and return the peak tensor memory only."""
    import contextlib

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from usjepa.masks import MultiBlockMaskGenerator
    from usjepa.methods import SALTModule
    from usjepa.models import JEPAPredictor, ViTEncoder
    from usjepa.models.host_reads import HostReads

    class NoGradTeacher(SALTModule):  # the targets as computed before inference_mode
        @torch.no_grad()
        def compute_targets(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return self._target_tokens(self.teacher, images, targets, self.teacher_layers)

    torch.set_num_threads(threads)
    masks = MultiBlockMaskGenerator(
        14, num_targets=4, context_scale=(0.85, 1.0), target_scale=(0.15, 0.2)
    )
    warmup = 2 if opts.get("compile_blocks") else 1  # compiling is not a step's cost
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(steps + warmup + 1):
        context, targets = masks(batch, g)
        batches.append({"image": torch.randn(batch, 1, 224, 224, generator=g),
                        "context": context, "targets": targets})  # fmt: skip
    tracker = TensorMemory() if memory else contextlib.nullcontext()
    tracker.__enter__()  # the models, the optimiser state and two steps
    vit_s = {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6}
    cls = NoGradTeacher if opts.get("no_grad_teacher") else SALTModule
    module = cls(
        ViTEncoder(**vit_s, init_seed=0),
        JEPAPredictor(14, 384, 384, width=384, depth=6, num_heads=12, one_pass=opts["one_pass"]),
        ViTEncoder(**vit_s, init_seed=1),
        teacher_dtype=opts.get("teacher_dtype"),
        activation_checkpointing=opts.get("activation_checkpointing", False),
        compile_blocks=opts.get("compile_blocks", False),
    )
    module.student.pack_tokens = module.predictor.pack_tokens = opts.get("pack", True)
    if opts.get("plan", True):
        batches = [module.on_before_batch_transfer(b, 0) for b in batches]
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=opts.get("fused"))

    def attention() -> contextlib.AbstractContextManager:
        if opts.get("math_attention"):
            return sdpa_kernel(SDPBackend.MATH)
        return contextlib.nullcontext()

    def step(b: dict, watch: contextlib.AbstractContextManager | None = None) -> None:
        with watch or contextlib.nullcontext():
            with attention():
                loss, _ = module.step_loss(b)
            with attention():
                loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # as PretrainModule.optimizer_step does

    if memory:
        step(batches[0])
        step(batches[1])  # with the optimiser state and the last step's gradients held
        tracker.__exit__(None, None, None)
        assert isinstance(tracker, TensorMemory)
        return {"peak_tensor_gb": tracker.peak / GB}
    if opts.get("compile_blocks"):  # the flop counter cannot trace compiled blocks
        step(batches[0])
        flops = float("nan")
    else:
        with flop_counter() as counter:
            step(batches[0])
        flops = counter.get_total_flops() / batch / 1e9
    for b in batches[1:warmup]:
        step(b)
    times = []
    for b in batches[warmup:-1]:
        start = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - start)
    # one more step, untimed: the host reads of its forward and backward pass (the
    # optimiser is left out: on a GPU its step counters stay on the host, or fused
    # AdamW keeps them on the device, and neither reads device memory)
    reads = HostReads()
    step(batches[-1], reads)
    return {
        "images_per_s": batch / statistics.median(times),
        "gflop_per_image": flops,
        "peak_rss_gb": peak_rss_gb(),
        "host_reads_per_step": reads.count,
    }


def main() -> None:
    """Run every variant in its own process and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--repeats", type=int, default=2, help="rounds over the rows (interleaved); medians"
    )
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--memory", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant is not None:
        opts = VARIANTS[args.variant][0]
        figures = measure(opts, args.steps, args.threads, args.batch, bool(args.memory))
        print(json.dumps(figures))
        return
    import pandas as pd

    names = [name for name, (opts, _) in VARIANTS.items() if "same_as" not in opts]
    runs = interleaved_with_memory(
        __file__, names, args.repeats, "variant", steps=args.steps, threads=args.threads,
        batch=args.batch,
    )  # fmt: skip
    pd.DataFrame(runs).to_csv(OUT / "fast_paths_runs.csv", index=False)
    measured = {
        r["variant"]: r for r in summarise(pd.DataFrame(runs), ["variant"]).to_dict("records")
    }
    rows = []
    for name, (opts, _) in VARIANTS.items():
        rows.append({**measured[opts.get("same_as", name)], "variant": name})
    table = pd.DataFrame(rows)
    table.to_csv(OUT / "fast_paths.csv", index=False)
    lines = [
        "# Fast paths of the SALT step, before and after",
        "",
        f"ViT-S/16 student and frozen teacher at 224 px, batch {args.batch}, predictor "
        "width 384 / depth 6 / 12 heads, 1 context block (0.85-1.0) and 4 target blocks "
        "(0.15-0.2) on 14 x 14 drawn per image, AdamW, CPU (AVX512-BF16), "
        f"{args.threads} threads; images/s is the median of {args.steps} timed steps, each "
        f"variant in its own process, {args.repeats} rounds over the rows interleaved and "
        "each figure the median of the rounds (the images/s range beside it; every run in "
        "`fast_paths_runs.csv`); each row is compared with the row named in its 'against' "
        "column. Rows that run the same code are measured once and shown twice: 'one pass' "
        "and '..., teacher under inference_mode'; 'one pass + bf16 teacher', '..., real "
        "tokens only' and '..., batch planned on the host'. Host reads: reads of device "
        "memory in one step's forward and backward pass (on a GPU, each a host-device "
        "synchronisation). Unless a row "
        "says otherwise, padded token sets run on their real tokens only and batches are "
        "planned on the host. Command: `python benchmarks/fast_paths.py`.",
        "",
        "GFLOP/image: one training step, `torch.utils.flop_counter` with the CPU's fused "
        "attention counted too. Peak tensor memory: the most bytes held by live tensors "
        "from building the models to the end of the second step, from the CPU allocator's "
        "record (`common.TensorMemory`, one untimed run per variant); peak RSS also holds "
        "the interpreter, the imported libraries and the heap the C allocator keeps.",
        "",
        "| variant | images/s | images/s, range | GFLOP/image | peak tensor memory (GB) | "
        "peak RSS (GB) | host reads | against | speed | FLOPs | tensor memory | RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_name = {r["variant"]: r for r in rows}
    for r in rows:
        base = VARIANTS[r["variant"]][1]
        keys = ("images_per_s", "gflop_per_image", "peak_tensor_gb", "peak_rss_gb")
        ratios = [""] * len(keys)
        if base is not None:
            b = by_name[base]
            ratios = [f"{r[k] / b[k]:.2f}x" if r[k] == r[k] else "n/a" for k in keys]
        gf = r["gflop_per_image"]
        flops = f"{gf:.1f}" if gf == gf else "n/a"
        lines.append(
            f"| {r['variant']} | {r['images_per_s']:.2f} | {r['images_per_s_range']} | "
            f"{flops} | {r['peak_tensor_gb']:.2f} | {r['peak_rss_gb']:.2f} | "
            f"{r['host_reads_per_step']:.0f} | "
            f"{base or '-'} | {' | '.join(ratios)} |"
        )
    (OUT / "fast_paths.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
