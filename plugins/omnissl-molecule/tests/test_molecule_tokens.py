"""Featurisation and tokens on real molecules: counts, relations vs RDKit, determinism, padding."""

from __future__ import annotations

import numpy as np
import torch
from rdkit import Chem

from omnissl import collate_tokens
from omnissl.maskers.random import RandomMasker
from omnissl.encoders.transformer import TokenEncoder
from omnissl_molecule.features import featurize, mol_from_smiles
from omnissl_molecule.modality import MoleculeModality
from omnissl_molecule.objective import MoleculeDenoisingMAE

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def test_atom_counts_match_rdkit_with_and_without_hydrogens():
    mol = Chem.MolFromSmiles(ASPIRIN)
    heavy, _ = featurize(mol, hydrogens=False, seed=0)
    with_h, _ = featurize(mol, hydrogens=True, seed=0)
    assert len(heavy.kinds) == mol.GetNumHeavyAtoms() == 13
    assert len(with_h.kinds) == Chem.AddHs(mol).GetNumAtoms() == 21
    # The kept SMILES rebuilds the molecule in token order (the visualiser relies on it).
    for arrays, hydrogens in ((heavy, False), (with_h, True)):
        rebuilt = mol_from_smiles(arrays.smiles, hydrogens)
        assert [a.GetAtomicNum() for a in rebuilt.GetAtoms()] == \
            [int(Chem.GetPeriodicTable().GetAtomicNumber(s)) for s in _symbols(arrays)]


def _symbols(arrays):
    from omnissl_molecule.features import ELEMENTS

    return [ELEMENTS[k] for k in arrays.kinds[:, 0]]


def test_same_smiles_gives_the_same_conformer_every_time():
    first, _ = featurize(Chem.MolFromSmiles(ASPIRIN), hydrogens=False, seed=0)
    second, _ = featurize(Chem.MolFromSmiles(ASPIRIN), hydrogens=False, seed=0)
    np.testing.assert_array_equal(first.coords, second.coords)
    np.testing.assert_allclose(first.coords.mean(0), 0.0, atol=1e-5)  # centred


def test_attention_bias_is_symmetric_and_matches_rdkit(cdk2_dataset):
    modality = MoleculeModality()
    channels = modality.relations
    for index in (0, 7, 30):
        arrays = cdk2_dataset[index]["molecule"]
        bias = modality.tokenize(cdk2_dataset[index], None).attn_bias.numpy()  # [n, n, R]
        np.testing.assert_array_equal(bias, bias.transpose(1, 0, 2))
        mol = mol_from_smiles(arrays.smiles, hydrogens=False)
        path = np.minimum(Chem.GetDistanceMatrix(mol), channels.max_path)
        np.testing.assert_array_equal(bias[..., :channels.num_path].argmax(-1), path)
        bonded = Chem.GetAdjacencyMatrix(mol).astype(bool)
        np.testing.assert_array_equal(bias[..., channels.num_path:channels.two_d.stop].any(-1), bonded)
        # The 3-D channels are the Gaussian basis of the conformer's own distance matrix.
        xyz = arrays.coords.astype(np.float64)
        distance = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
        np.testing.assert_allclose(bias[..., channels.distance], channels.gaussians_np(distance), atol=1e-4)
        assert (bias[..., channels.known] == 1).all()


def test_tokens_follow_the_spec_and_rotation_keeps_distances(cdk2_dataset):
    modality = MoleculeModality()
    spec = modality.spec()
    sample = cdk2_dataset[3]
    plain = modality.tokenize(sample, None)
    rotated = modality.tokenize(sample, np.random.default_rng(1))
    for tokens in (plain, rotated):
        tokens.validate(spec)
    assert plain.targets["element"].shape == (len(plain), 1)
    assert not torch.allclose(plain.coords, rotated.coords, atol=1e-3)
    torch.testing.assert_close(torch.cdist(plain.coords, plain.coords), torch.cdist(rotated.coords, rotated.coords),
                               atol=1e-4, rtol=1e-4)


def _objective(modality, **options):
    torch.manual_seed(0)
    encoder = TokenEncoder(modality.spec(), modality, dim=32, depth=2, heads=4)
    return MoleculeDenoisingMAE(encoder, modality, decoder_dim=32, decoder_depth=1, decoder_heads=4, **options)


def test_padding_is_never_visible_and_never_in_the_loss(cdk2_dataset):
    modality = MoleculeModality()
    small = modality.tokenize({"molecule": featurize(Chem.MolFromSmiles("CCO"), False, 0)[0]}, None)
    batch = collate_tokens([small, modality.tokenize(cdk2_dataset[0], None)])
    assert batch.pad[0, 3:].all() and not batch.pad[1].any()
    mask = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0))
    assert not (mask.hidden & batch.pad).any()
    assert not batch.pad.gather(1, mask.visible_idx)[~mask.visible_pad].any()
    for options in ({}, {"relations": "blend"}):
        objective = _objective(modality, **options).eval()
        torch.manual_seed(1)
        loss = objective(batch, mask).loss
        garbage = batch.values.clone()
        garbage[0, 3:] = 1e3
        bias = batch.attn_bias.clone()
        bias[0, 3:] = 7.0
        bias[0, :, 3:] = 7.0
        coords = batch.coords.clone()
        coords[0, 3:] = -50.0
        from dataclasses import replace

        noisy = replace(batch, values=garbage, attn_bias=bias, coords=coords)
        torch.manual_seed(1)
        torch.testing.assert_close(objective(noisy, mask).loss, loss)


def test_blend_shows_each_pair_one_relation_group_symmetrically(cdk2_dataset):
    modality = MoleculeModality()
    channels = modality.relations
    batch = collate_tokens([modality.tokenize(cdk2_dataset[i], None) for i in range(4)])
    blended, shows_3d = channels.blend(batch.attn_bias, batch.pad, torch.Generator().manual_seed(0))
    assert torch.equal(shows_3d, shows_3d.transpose(1, 2))
    real = ~batch.pad[:, :, None] & ~batch.pad[:, None]
    two_d = blended[..., channels.two_d].abs().sum(-1) > 0
    three_d = blended[..., channels.three_d].abs().sum(-1) > 0
    assert not (two_d & three_d).any()
    assert (three_d == (shows_3d & real)).all()
    assert 0.3 < shows_3d[real].float().mean() < 0.7


def test_denoising_loss_goes_down():
    modality = MoleculeModality()
    smiles = ["CCO", "c1ccccc1O", "CC(=O)N", "ClCCl", "CCN(CC)CC", "OC(=O)c1ccncc1", ASPIRIN, "CS(=O)(=O)Cl"]
    batch = collate_tokens([modality.tokenize({"molecule": featurize(Chem.MolFromSmiles(s), False, 0)[0]}, None)
                            for s in smiles])
    objective = _objective(modality, coord_noise=1.0)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=2e-3)
    mask = RandomMasker(0.3)(batch, torch.Generator().manual_seed(0))
    losses = []
    for step in range(20):
        torch.manual_seed(step)
        out = objective(batch, mask)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert set(out.metrics) >= {"loss_element", "loss_coords", "loss_distance"}
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
