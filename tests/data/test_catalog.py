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


def test_catalogue_names_a_source_and_a_licence_or_a_reason():
    """At least 45 of the 49 corpus sets say where they are published and under what
    licence, or why no licence is given; restrictions on training are spelled out."""
    catalog = load_catalog()
    covered = [e for e in catalog.datasets.values() if e.source and (e.licence or e.note)]
    assert len(covered) >= 45, sorted(set(catalog.datasets) - {e.name for e in covered})
    assert "not 3-D" in catalog.entry("MMOTU-3D").layout  # OTU_3d is the CEUS set
    assert "do not train" in catalog.tasks["butterfly"]["use"]
    gated = catalog.entry("EchoNet-Dynamic").access
    assert gated and "Videos/*.avi" in gated["expect"]
    assert catalog.fetch_spec("fatty_liver")["download"] == {"zenodo": 1009146}


def test_catalog_command_filters_by_licence_and_organ(capsys):
    main(["data", "catalog", "--licence", "CC BY 4.0"])
    table = capsys.readouterr().out
    assert "| FETAL_PLANES_DB |" in table and "| EchoNet-Dynamic |" not in table
    main(["data", "catalog", "--organ", "heart"])
    table = capsys.readouterr().out
    assert "| CAMUS |" in table and "| HC18 |" not in table and "| gated |" in table
