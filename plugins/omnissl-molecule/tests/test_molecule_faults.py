"""Faulty molecule files (issue 12): RDKit's own console output and non-finite numbers.

A bad molecule gives one omnissl skip warning that names the file and line/record and
quotes RDKit's reason, and nothing raw on stderr (RDKit writes from C++ straight to file
descriptor 2, hence ``capfd``). No NaN or infinity enters the cache: infinite labels and
non-finite coordinates are skipped by name and counted like unreadable records.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem, rdBase

from omnissl.errors import DataError
from omnissl_molecule.cache import MoleculeRows, write_cache
from omnissl_molecule.datasets import MoleculeFiles
from omnissl_molecule.readers import tidy_rdkit_log

RDKIT_LINE = re.compile(r"\[\d\d:\d\d:\d\d\]|SMILES Parse Error|Explicit valence|Could not sanitize|ERROR:|V30")


def load(paths: list[Path], cache: Path, **options: object) -> tuple[MoleculeFiles, list[str]]:
    """The data set and the text of every warning it gave (all of them, duplicates included)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = MoleculeFiles([str(p) for p in paths], cache_dir=str(cache), **options)
    return ds, [str(w.message) for w in caught]


def skips(messages: list[str]) -> list[str]:
    return [m for m in messages if m.startswith("skipping ")]


def assert_cache_finite(ds: MoleculeFiles) -> None:
    """Every float array on disk is finite; labels are finite or NaN ("no label"), never infinite."""
    for name in ("values", "coords", "distance"):
        assert np.isfinite(np.load(ds.cache.folder / f"{name}.npy")).all(), name
    assert not np.isinf(np.load(ds.cache.folder / "targets.npy")).any()


def sdf_records(molecule_data_dir: Path) -> list[str]:
    """cdk2.sdf's records, each ending with its "$$$$" line."""
    return [r + "$$$$\n" for r in (molecule_data_dir / "cdk2.sdf").read_text().split("$$$$\n") if r.strip()]


def test_invalid_smiles_give_one_warning_with_rdkits_reason_and_nothing_on_stderr(tmp_path, capfd):
    path = tmp_path / "table.csv"
    # Good molecules first: the old code re-enabled RDKit's log after featurising one, so later errors leaked.
    path.write_text("smiles,y\nCCO,1\nc1ccccc1,2\nC1CC(,3\nCC(C)(C)(C)(C)C,4\nCCN,5\n")
    capfd.readouterr()
    ds, messages = load([path], tmp_path / "cache", label_column="y")
    err = capfd.readouterr().err
    assert not RDKIT_LINE.search(err), f"raw RDKit output on stderr: {err!r}"
    assert len(ds) == 3 and [where for where, _ in ds.skipped] == [f"{path}, line 4", f"{path}, line 5"]
    bad = skips(messages)
    assert len(bad) == 2  # one per bad molecule
    assert bad[0].startswith(f"skipping {path}, line 4: invalid SMILES 'C1CC(' (RDKit: SMILES Parse Error:")
    assert "syntax error while parsing" in bad[0] and "position 5" in bad[0]
    assert bad[1].startswith(f"skipping {path}, line 5: invalid SMILES")
    assert "Explicit valence for atom # 1 C, 6, is greater than permitted" in bad[1]
    np.testing.assert_array_equal(ds.labels, [1.0, 2.0, 5.0])


def test_sdf_record_with_a_bad_valence_gives_rdkits_reason_and_nothing_on_stderr(tmp_path, capfd, molecule_data_dir):
    records = sdf_records(molecule_data_dir)
    lines = records[1].split("\n")
    oxygen = next(i for i, line in enumerate(lines) if line[31:34].strip() == "O")  # the ether O: two bonds
    lines[oxygen] = lines[oxygen][:31] + "F  " + lines[oxygen][34:]  # a fluorine with two bonds
    path = tmp_path / "valence.sdf"
    path.write_text(records[0] + "\n".join(lines) + records[2])
    capfd.readouterr()
    ds, messages = load([path], tmp_path / "cache")
    err = capfd.readouterr().err
    assert not RDKIT_LINE.search(err), f"raw RDKit output on stderr: {err!r}"
    assert len(ds) == 2 and [where for where, _ in ds.skipped] == [f"{path}, record 2"]
    (bad,) = skips(messages)
    assert bad.startswith(f"skipping {path}, record 2: unreadable SDF record (RDKit: Explicit valence for atom")
    assert "F, 2, is greater than permitted" in bad and "Could not sanitize molecule" in bad
    with pytest.raises(DataError, match=r"record 2: unreadable SDF record \(RDKit: Explicit valence"):
        MoleculeFiles([str(path)], cache_dir=str(tmp_path / "strict"), strict=True)
    assert not RDKIT_LINE.search(capfd.readouterr().err)


def test_rdkit_log_settings_are_left_as_they_were(tmp_path):
    path = tmp_path / "few.smi"
    path.write_text("CCO\nC1CC(\nc1ccccc1\n")
    before = rdBase.LogStatus()
    load([path], tmp_path / "cache")
    assert rdBase.LogStatus() == before  # the old DisableLog/EnableLog pair switched on info and debug logging
    rdBase.DisableLog("rdApp.error")  # a user who silenced RDKit's errors still gets quiet parsing
    try:
        load([path], tmp_path / "cache2")
        assert "rdApp.error:disabled" in rdBase.LogStatus()
    finally:
        rdBase.EnableLog("rdApp.error")


def test_infinite_labels_are_skipped_and_nan_means_unlabelled(tmp_path, molecule_data_dir):
    path = tmp_path / "labels.csv"
    path.write_text("smiles,y\nCCO,1.5\nCCC,inf\nCCN,-Infinity\nCCCl,1e400\nc1ccccc1,nan\nCC,\nCO,2\n")
    ds, messages = load([path], tmp_path / "cache", label_column="y")
    assert [where for where, _ in ds.skipped] == [f"{path}, line {k}" for k in (3, 4, 5)]
    assert all("its label is" in m and "not a finite number" in m for m in skips(messages))
    assert ds.labels[0] == 1.5 and np.isnan(ds.labels[1:3]).all() and ds.labels[3] == 2.0 and len(ds) == 4
    assert_cache_finite(ds)
    # The same rule for an SD property.
    records = sdf_records(molecule_data_dir)[:3]
    records[1] = records[1].replace("$$$$\n", "> <y>\ninf\n\n$$$$\n")
    records[2] = records[2].replace("$$$$\n", "> <y>\n-3.25\n\n$$$$\n")
    sdf = tmp_path / "labels.sdf"
    sdf.write_text("".join(records))
    ds, _ = load([sdf], tmp_path / "cache-sdf", label_column="y")
    assert [where for where, _ in ds.skipped] == [f"{sdf}, record 2"]
    assert np.isnan(ds.labels[0]) and ds.labels[1] == -3.25
    with pytest.raises(DataError, match=r"line 3: its label is inf"):
        MoleculeFiles([str(path)], label_column="y", cache_dir=str(tmp_path / "strict"), strict=True)


@pytest.mark.parametrize("value", ["nan", "inf", "1e39"])  # 1e39 parses, but is infinite as float32
def test_non_finite_file_coordinates_are_skipped_and_never_cached(tmp_path, molecule_data_dir, value, capfd):
    supplier = Chem.SDMolSupplier(str(molecule_data_dir / "cdk2.sdf"))
    blocks = [Chem.MolToV3KMolBlock(supplier[i]) + "$$$$\n" for i in range(3)]
    first_atom = re.search(r"^M  V30 1 (\S+) (\S+) ", blocks[1], re.M)
    blocks[1] = blocks[1].replace(first_atom.group(0), f"M  V30 1 {first_atom.group(1)} {value} ", 1)
    path = tmp_path / "coords.sdf"
    path.write_text("".join(blocks))
    capfd.readouterr()
    ds, messages = load([path], tmp_path / "cache")
    assert not RDKIT_LINE.search(capfd.readouterr().err)
    assert len(ds) == 2 and [where for where, _ in ds.skipped] == [f"{path}, record 2"]
    (bad,) = skips(messages)
    assert f"{path}, record 2: its " in bad and "not finite" in bad
    assert_cache_finite(ds)
    assert all(ds[i]["molecule"].has_3d for i in range(2))


def test_the_cache_refuses_non_finite_numbers(tmp_path, cdk2_dataset):
    good = cdk2_dataset[0]["molecule"]
    broken = cdk2_dataset[1]["molecule"]
    broken.distance[0, 1] = np.nan

    def rows(*labels):
        return MoleculeRows(np.array(labels, dtype=np.float64)[:, None], np.zeros(len(labels)),
                            np.arange(1, len(labels) + 1), [""] * len(labels))

    with pytest.raises(ValueError, match="non-finite distance"):
        write_cache(tmp_path / "a", [good, broken], rows(1.0, 2.0), {})
    with pytest.raises(ValueError, match="infinite labels"):
        write_cache(tmp_path / "b", [good], rows(np.inf), {})
    write_cache(tmp_path / "c", [good], rows(np.nan), {})  # NaN: no label, allowed
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and (tmp_path / "c").is_dir()


def test_tidy_rdkit_log_keeps_the_reason_and_drops_the_noise():
    text = ("[02:42:25] SMILES Parse Error: syntax error while parsing: C1CC(\n"
            "[02:42:25] SMILES Parse Error: check for mistakes around position 5:\n"
            "[02:42:25] C1CC(\n[02:42:25] ~~~~^\n"
            "[02:42:25] ERROR: Explicit valence for atom # 0 N, 5, is greater than permitted\n"
            "[02:42:25] ERROR: Explicit valence for atom # 0 N, 5, is greater than permitted\n")
    assert tidy_rdkit_log(text, echo="C1CC(") == (
        "SMILES Parse Error: syntax error while parsing: C1CC(; check for mistakes around position 5; "
        "Explicit valence for atom # 0 N, 5, is greater than permitted")
    assert tidy_rdkit_log("") == ""
