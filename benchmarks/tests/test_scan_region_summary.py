"""The scan-region summary says, unrounded, which rows hold the bar."""

from pathlib import Path

import pandas as pd

from benchmarks.data import scan_region_report as sr


def _run(path: Path, rows: dict[str, list[float]]) -> None:
    frame = pd.DataFrame(
        [{"type": kind, "frame": str(i), "iou": v, "iou_baseline": 0.5}
         for kind, values in rows.items() for i, v in enumerate(values)]
    )  # fmt: skip
    frame["fps"], frame["fps_baseline"] = 700.0, 350.0
    frame.to_csv(path, index=False)


def test_a_row_that_rounds_to_the_bar_but_misses_it_says_so(tmp_path):
    _run(
        tmp_path / "scan_region_before.csv",
        {"synthetic convex": [0.90, 0.91], "screen": [0.99, 0.99]},
    )
    _run(
        tmp_path / "scan_region_bars.csv",
        {
            "synthetic convex": [0.96, 0.97],
            "screen": [0.9497, 0.9497],  # prints as 0.950
            f"screen, {sr.NO_FLAT}": [0.2, 0.3],
        },
    )
    sr.write_summary(tmp_path)
    table = {
        line.split(" | ")[0].lstrip("| "): line.rstrip(" |").split(" | ")[-1]
        for line in (tmp_path / "scan_region.md").read_text().splitlines()
        if line.startswith("| ") and not line.startswith("| image type")
    }
    assert table["synthetic convex"] == "yes"  # the latest run decides, not the first
    assert table["screen"] == "no (0.9497)"
    assert table[f"screen, {sr.NO_FLAT}"] == "-"  # an ablation has no bar
    assert "p5 >= 0.95 (bars)" in (tmp_path / "scan_region.md").read_text()


def test_a_run_given_clips_states_the_per_clip_cost(tmp_path):
    _run(tmp_path / "scan_region_before.csv", {"synthetic convex": [0.96, 0.97]})
    clips = pd.DataFrame(
        [{"type": "real clip", "frame": "c", "iou": 0.98, "iou_baseline": 0.9}]
    ).assign(fps=700.0, fps_baseline=350.0, clip_frames=16, clip_ms=9.5, clip_fps=1684.2,
             clip_single_fps=690.0)  # fmt: skip
    clips.to_csv(tmp_path / "scan_region_clip_cost.csv", index=False)
    sr.write_summary(tmp_path)
    speed = {
        line.split(" | ")[0].lstrip("| "): line.rstrip(" |").split(" | ")[1:]
        for line in (tmp_path / "scan_region.md").read_text().splitlines()
        if line.startswith("| before |") or line.startswith("| clip_cost |")
    }
    # frames/s, baseline, ratio, without flat fill, ms per clip, clip frames/s, single
    assert speed["clip_cost"] == ["700", "350", "2.00", "-", "9.5 (16 frames)", "1684", "690"]
    assert speed["before"][4:] == ["-", "-", "-"]  # a run without --clips


def test_real_screens_are_listed_per_screen_one_frame_and_as_built(tmp_path):
    from benchmarks.data.real_screens import (
        AS_BUILT,
        GALLERY_BUILT,
        GALLERY_ONE,
        GRABBER,
        ONE_FRAME,
    )

    rows = [{"type": ONE_FRAME, "screen": "A", "iou": v, "iou_baseline": 0.4} for v in (0.5, 0.7)]
    rows += [
        {"type": ONE_FRAME, "screen": "B", "iou": 0.9, "iou_baseline": 0.4},
        {"type": AS_BUILT, "screen": "A", "iou": 0.97, "iou_baseline": 0.4, "inside": 0.99},
        {"type": GALLERY_ONE, "screen": "C", "iou": 0.8, "iou_baseline": 0.4},
        {"type": GALLERY_ONE, "screen": "C", "iou": 0.6, "iou_baseline": 0.4},
        {"type": GALLERY_BUILT, "screen": "C", "iou": 0.95, "iou_baseline": 0.4, "inside": 1.0},
        # a still image: built as its one frame
        {"type": GRABBER, "screen": "D", "iou": 0.3, "iou_baseline": 0.4, "inside": 0.98},
    ]
    pd.DataFrame(rows).assign(frame="f", fps=700.0, fps_baseline=350.0).to_csv(
        tmp_path / "scan_region_screens.csv", index=False
    )
    sr.write_summary(tmp_path)
    lines = (tmp_path / "scan_region.md").read_text().splitlines()
    assert "| A | 2 | 0.600 / 0.500 | 0.970 | 0.990 |" in lines
    assert "| B | 1 | 0.900 / 0.900 | - | - |" in lines  # a screen the build did not score
    assert "| C | 2 | 0.700 / 0.600 | 0.950 | 1.000 |" in lines  # a gallery clip: frames, built
    assert "| D | 1 | 0.300 / 0.300 | 0.300 | 0.980 |" in lines  # a still: its one frame
