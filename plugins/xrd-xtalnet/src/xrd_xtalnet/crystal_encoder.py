"""CrystalEncoder: an E(3)-equivariant graph network (e3nn) over a periodic radius graph, pooled
to an invariant embedding of the crystal.

1. Nodes: a learned embedding of the atomic number, as scalars (``0e``).
2. Edges: every neighbour image within ``cutoff`` Å (:func:`xrd_xtalnet.periodic_graph.radius_graph`),
   with spherical harmonics of the edge direction up to ``lmax`` and a radial basis of its
   length (e3nn's ``smooth_finite`` basis, which goes smoothly to zero at the cutoff, so a pair
   at the cutoff contributes nothing and the embedding is continuous in the atom positions).
3. ``layers`` interaction blocks: a depthwise tensor product of the neighbour's features with
   the edge harmonics, its weights an MLP of the radial basis; summed over neighbours, scaled by
   ``1/sqrt(neighbours)`` (a constant); mixed by an equivariant linear layer, added to a linear
   self-connection, and passed through a gated nonlinearity (scalars: SiLU, higher orders gated
   by sigmoid scalars).
4. Readout: the scalar channels of the last layer, an MLP per atom, the **mean** over the atoms
   of each crystal, a linear layer → ``embed_dim``.

Everything the network sees is a distance, a direction relative to the others, or an atomic
number, so the embedding is unchanged by rotating the crystal, moving the origin, renumbering
the atoms or describing it by another cell of the same lattice (any unimodular change of basis,
e.g. a reduced cell); with mean pooling a supercell gives the same embedding too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from xrd_xtalnet.crystals import CrystalBatch
from xrd_xtalnet.periodic_graph import radius_graph

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["CrystalEncoder"]

MAX_Z = 118


class _Interaction(nn.Module):
    """One equivariant convolution + gate: ``irreps_in`` node features → ``irreps_hidden``."""

    def __init__(self, irreps_in, irreps_sh, irreps_hidden, n_basis: int, radial_hidden: int, neighbours: float):
        super().__init__()
        from e3nn import nn as enn
        from e3nn import o3

        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l > 0])
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.gate = enn.Gate(scalars, [nn.functional.silu] * len(scalars), gates,
                             [torch.sigmoid] * len(gates), gated)
        wanted = {ir for _, ir in self.gate.irreps_in}
        paths, instructions = [], []
        for i1, (mul, ir1) in enumerate(irreps_in):
            for i2, (_, ir2) in enumerate(irreps_sh):
                for ir_out in ir1 * ir2:
                    if ir_out in wanted:
                        instructions.append((i1, i2, len(paths), "uvu", True))
                        paths.append((mul, ir_out))
        self.tp = o3.TensorProduct(irreps_in, irreps_sh, o3.Irreps(paths), instructions,
                                   internal_weights=False, shared_weights=False)
        self.radial = enn.FullyConnectedNet([n_basis, radial_hidden, self.tp.weight_numel], nn.functional.silu)
        self.mix = o3.Linear(self.tp.irreps_out, self.gate.irreps_in)
        self.self_connection = o3.Linear(irreps_in, self.gate.irreps_in)
        self.irreps_out = self.gate.irreps_out
        self.neighbours = float(neighbours)

    def forward(self, x, src, dst, sh, basis):
        messages = self.tp(x[src], sh, self.radial(basis))
        summed = messages.new_zeros(x.shape[0], messages.shape[1]).index_add_(0, dst, messages)
        return self.gate(self.self_connection(x) + self.mix(summed) / self.neighbours ** 0.5)


class CrystalEncoder(nn.Module):
    """Crystal → invariant embedding ``(G, embed_dim)``; see the module docstring.

    Arguments: ``embed_dim`` 256; ``cutoff`` 5.0 Å; ``lmax`` 2 (edge harmonics); ``hidden``
    e3nn irreps of the node features, default ``"64x0e + 16x1o + 8x2e"``; ``layers`` 3;
    ``n_basis`` 10 radial functions; ``radial_hidden`` 64; ``neighbours`` 20, the typical number of
    neighbours that sums are divided by (a constant, so it does not depend on the cell chosen).
    """

    def __init__(self, *, embed_dim: int = 256, cutoff: float = 5.0, lmax: int = 2,
                 hidden: str = "64x0e + 16x1o + 8x2e", layers: int = 3, n_basis: int = 10,
                 radial_hidden: int = 64, neighbours: float = 20.0):
        super().__init__()
        from e3nn import o3

        if cutoff <= 0:
            raise ValueError(f"cutoff must be positive (Å), got {cutoff!r}")
        if layers < 1 or lmax < 0 or n_basis < 2:
            raise ValueError(f"need layers >= 1, lmax >= 0 and n_basis >= 2, got {layers}, {lmax}, {n_basis}")
        hidden_irreps = o3.Irreps(hidden).simplify()
        scalar_channels = sum(mul for mul, ir in hidden_irreps if ir == o3.Irrep("0e"))
        if scalar_channels == 0:
            raise ValueError(f"hidden irreps {hidden!r} need scalar (0e) channels for the invariant readout")
        self.embed_dim, self.cutoff, self.lmax, self.n_basis = int(embed_dim), float(cutoff), int(lmax), int(n_basis)
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.species = nn.Embedding(MAX_Z + 1, scalar_channels)
        irreps = o3.Irreps(f"{scalar_channels}x0e")
        self.interactions = nn.ModuleList()
        for _ in range(layers):
            block = _Interaction(irreps, self.irreps_sh, hidden_irreps, n_basis, radial_hidden, neighbours)
            self.interactions.append(block)
            irreps = block.irreps_out
        self.scalar_slice = irreps.slices()[0] if irreps[0].ir == o3.Irrep("0e") else None
        self.readout = nn.Sequential(nn.Linear(scalar_channels, scalar_channels), nn.SiLU(),
                                     nn.Linear(scalar_channels, scalar_channels))
        self.output = nn.Linear(scalar_channels, embed_dim)

    def forward(self, crystals: CrystalBatch) -> torch.Tensor:
        from e3nn import o3
        from e3nn.math import soft_one_hot_linspace

        src, dst, _, vectors = radius_graph(crystals.lattice, crystals.frac, crystals.batch, self.cutoff)
        length = torch.linalg.vector_norm(vectors, dim=1)
        sh = o3.spherical_harmonics(self.irreps_sh, vectors, normalize=True, normalization="component")
        basis = soft_one_hot_linspace(length, 0.0, self.cutoff, self.n_basis, basis="smooth_finite",
                                      cutoff=True) * self.n_basis ** 0.5
        x = self.species(crystals.numbers)
        for block in self.interactions:
            x = block(x, src, dst, sh, basis)
        scalars = x[:, self.scalar_slice]
        per_atom = self.readout(scalars)
        pooled = per_atom.new_zeros(len(crystals), per_atom.shape[1]).index_add_(0, crystals.batch, per_atom)
        pooled = pooled / crystals.counts.clamp(min=1).to(pooled.dtype)[:, None]
        return self.output(pooled)

    def embed_structures(self, structures: Sequence[Structure]) -> torch.Tensor:
        """``(G, embed_dim)`` embeddings of pymatgen structures, on this module's device and dtype."""
        parameter = next(self.parameters())
        return self(CrystalBatch.from_structures(structures, parameter.device, parameter.dtype))
