"""The periodic radius graph against pymatgen's neighbour search, and the e3nn crystal encoder's
invariances: rotation, origin, atom order, choice of cell, supercell; and that it is not blind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from xrd_xtalnet.crystal_encoder import CrystalEncoder
from xrd_xtalnet.crystals import CrystalBatch, crystal_arrays
from xrd_xtalnet.periodic_graph import GraphError, image_counts, radius_graph

ENCODER = {"embed_dim": 16, "cutoff": 4.5, "lmax": 2, "hidden": "16x0e + 4x1o + 4x2e", "layers": 2, "n_basis": 8}


def _triclinic():
    return Structure(Lattice.from_parameters(4.1, 5.2, 6.3, 80, 95, 104), ["Na", "Cl", "Cl", "O", "Mg"],
                     [[0, 0, 0], [.3, .2, .1], [.6, .7, .45], [.1, .8, .9], [.52, .31, .77]])


def _thin():
    """An oblique, thin cell: a 6 Å cutoff needs several images along every axis."""
    return Structure(Lattice.from_parameters(2.1, 2.6, 9.0, 60, 70, 50), ["Si", "O"], [[0, 0, 0], [.4, .3, .6]])


def _neighbour_pairs(structure, cutoff):
    lattice, frac, numbers = crystal_arrays(structure)
    batch = CrystalBatch.from_arrays([(lattice, frac, numbers)], dtype=torch.float64)
    src, dst, shift, vectors = radius_graph(batch.lattice, batch.frac, batch.batch, cutoff)
    return src, dst, shift, vectors


@pytest.mark.parametrize("make, cutoff", [(_triclinic, 5.0), (_thin, 6.0), (_thin, 2.2)])
def test_radius_graph_finds_what_pymatgen_finds(make, cutoff):
    structure = make()
    src, dst, shift, vectors = _neighbour_pairs(structure, cutoff)
    ours = sorted((int(i), int(j), round(float(np.linalg.norm(v)), 6)) for i, j, v in zip(src, dst, vectors.numpy()))
    theirs = sorted((i, int(n.index), round(float(n.nn_distance), 6))
                    for i, neighbours in enumerate(structure.get_all_neighbors(cutoff)) for n in neighbours)
    assert ours == theirs
    assert len(ours) > 0
    cart = structure.cart_coords
    recomputed = cart[dst.numpy()] + shift.numpy() @ structure.lattice.matrix - cart[src.numpy()]
    assert np.allclose(recomputed, vectors.numpy(), atol=1e-9)


def test_image_counts_follow_the_plane_spacings():
    lattice = torch.tensor(Lattice.from_parameters(2.0, 10.0, 3.0, 90, 90, 90).matrix)
    assert image_counts(lattice, 5.0).tolist() == [3, 1, 3]  # ceil(5/2 + 0.5), ceil(0.5 + 0.5), ceil(5/3 + 0.5)
    with pytest.raises(GraphError):
        radius_graph(torch.zeros(1, 3, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64),
                     torch.zeros(1, dtype=torch.long), 1.0)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return CrystalEncoder(**ENCODER).double().eval()


def _embed(encoder, structures):
    with torch.no_grad():
        return encoder(CrystalBatch.from_structures(structures, dtype=torch.float64))


def _rotated(structure, seed):
    rotation = Rotation.random(random_state=seed).as_matrix()
    return Structure(Lattice(structure.lattice.matrix @ rotation.T), structure.species, structure.frac_coords)


def _translated(structure, shift):
    return Structure(structure.lattice, structure.species, np.mod(structure.frac_coords + shift, 1.0))


def _permuted(structure, seed):
    order = np.random.default_rng(seed).permutation(len(structure))
    return Structure(structure.lattice, [structure.species[i] for i in order], structure.frac_coords[order])


def _other_cell(structure, matrix):
    """The same crystal described with the basis ``matrix @ (a, b, c)`` (unimodular integer matrix)."""
    matrix = np.asarray(matrix)
    assert abs(round(np.linalg.det(matrix))) == 1
    return Structure(Lattice(matrix @ structure.lattice.matrix), structure.species, structure.cart_coords,
                     coords_are_cartesian=True, to_unit_cell=True)


@pytest.mark.parametrize("make", [_triclinic, _thin])
def test_embedding_is_invariant(encoder, make):
    structure = make()
    reference = _embed(encoder, [structure])
    variants = {
        "rotation": _rotated(structure, 1),
        "rotation and reflection": Structure(Lattice(-_rotated(structure, 2).lattice.matrix), structure.species,
                                             structure.frac_coords),
        "origin": _translated(structure, [0.37, 0.11, 0.5]),
        "atom order": _permuted(structure, 3),
        "unimodular cell": _other_cell(structure, [[1, 2, 0], [0, 1, 0], [1, 1, 1]]),
        "negative basis": _other_cell(structure, [[0, 1, 0], [1, 0, 0], [0, 0, 1]]),
        "reduced cell": _other_cell(structure, [[1, 0, 0], [3, 1, 0], [-2, 0, 1]]).get_reduced_structure("LLL"),
        "2x1x1 supercell": structure * (2, 1, 1),
        "all at once": _permuted(_translated(_rotated(structure * (1, 1, 2), 4), [0.2, 0.9, 0.4]), 5),
    }
    embeddings = _embed(encoder, list(variants.values()))
    for (name, variant), embedding in zip(variants.items(), embeddings):
        assert len(variant) % len(structure) == 0
        assert torch.allclose(embedding, reference[0], atol=1e-9, rtol=0), name


def test_embedding_sees_the_structure_and_is_differentiable(encoder):
    structure = _triclinic()
    moved = structure.copy()
    moved.translate_sites([1], [0.05, 0, 0])
    swapped = structure.copy()
    swapped.replace(0, "K")
    strained = Structure(Lattice(structure.lattice.matrix * 1.05), structure.species, structure.frac_coords)
    embeddings = _embed(encoder, [structure, moved, swapped, strained])
    for other in embeddings[1:]:
        assert (other - embeddings[0]).abs().max() > 1e-4
    model = CrystalEncoder(**ENCODER)
    batch = CrystalBatch.from_structures([structure, _thin()])
    batch.frac.requires_grad_(True)
    out = model(batch)
    assert out.shape == (2, 16)
    out.square().sum().backward()
    assert torch.isfinite(batch.frac.grad).all() and batch.frac.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_batched_embeddings_equal_single_ones(encoder):
    structures = [_triclinic(), _thin(), _triclinic() * (1, 2, 1)]
    together = _embed(encoder, structures)
    alone = torch.cat([_embed(encoder, [s]) for s in structures])
    assert torch.allclose(together, alone, atol=1e-10)
    assert torch.allclose(together[0], together[2], atol=1e-9)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        CrystalEncoder(hidden="8x1o")
    with pytest.raises(ValueError):
        CrystalEncoder(cutoff=0)
