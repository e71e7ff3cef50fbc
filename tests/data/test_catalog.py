"""The dataset catalogue is complete and well-formed, and `data build` uses it."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.data.raw_sources import write_images
from usjepa.cli import main
from usjepa.data.ingest.catalog import CatalogError, load_catalog

OPENUS_46 = [
    "105US",
    "AbdomenUS",
    "ACOUSLIC",
    "AUL",
    "BLUES",
    "BP (nerve)",
    "Brachial Plexus",
    "BrEaST",
    "BUS-B",
    "BUS_UC",
    "BUS_UCML",
    "BUS-BRA",
    "CACTUS",
    "CAMUS",
    "CardiacUDC",
    "CCAUI",
    "DFHI",
    "EchoCP",
    "EchoNet-Dynamic",
    "EchoNet-Pediatric",
    "FALLMUD",
    "FASS",
    "Fast-U-Net",
    "FEFT",
    "FETAL_PLANES_DB",
    "FH-PS-AOP",
    "GIST514-DB",
    "HC18",
    "JNU-IFM",
    "kidneyUS",
    "LUSS_phantom",
    "MicroSeg",
    "MMOTU-2D",
    "MMOTU-3D",
    "POCUS",
    "Porcine spinal cord",
    "PSFHS",
    "regPro",
    "S1",
    "SegThy",
    "STMUS_NDA",
    "STU-Hospital",
    "Thyroid (TN3K/TG3K/DDTI)",
    "Stanford Thyroid Cineclip",
    "Kaggle Ultrasound Fetus",
    "UPBD",
]
TASKS = ["aul_mass", "busbra", "butterfly", "fatty_liver", "gbcu", "mmotu", "pocus", "tn5000"]


def test_catalog_lists_49_datasets_including_openus_and_8_tasks():
    catalog = load_catalog()
    assert len(catalog.datasets) == 49
    names = set(catalog.datasets) | {e.aka for e in catalog.datasets.values() if e.aka}
    assert len(OPENUS_46) == 46 and not set(OPENUS_46) - names
    assert sorted(catalog.tasks) == TASKS
    for entry in catalog.datasets.values():
        assert entry.organ and entry.kinds and entry.layout


def test_catalog_errors_name_the_problem(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("datasets:\n  X: {organ: liver, kinds: [image]}\n")
    with pytest.raises(CatalogError, match="missing keys"):
        load_catalog(bad)
    with pytest.raises(CatalogError, match="did you mean 'CAMUS'"):
        load_catalog().entry("camus")


def test_cli_build_takes_organ_and_patients_from_the_catalog(tmp_path):
    write_images(tmp_path / "raw" / "patient0001", n=2)
    main(
        [
            "data",
            "build",
            str(tmp_path / "raw"),
            str(tmp_path / "out"),
            "--dataset",
            "CAMUS",
            "--size",
            "48",
        ]
    )
    table = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert (table["organ"] == "heart").all() and len(table) == 2
    main(["data", "validate", str(tmp_path / "out" / "manifest.parquet")])
