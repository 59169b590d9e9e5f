"""xrd-xtalnet: XtalNet (Lai et al., arXiv 2401.03862) as an xrdcore plugin.

* :mod:`xrd_xtalnet.pxrd_encoder` — ``PeakTransformer``, the encoder ``xtalnet-pxrd`` (input kind
  ``peaks``), usable for space-group classification like any encoder;
* :mod:`xrd_xtalnet.crystals` — crystals as batched tensors, to and from pymatgen, validity;
* :mod:`xrd_xtalnet.periodic_graph` — neighbours within a cutoff over every periodic image needed;
* :mod:`xrd_xtalnet.crystal_encoder` — ``CrystalEncoder``, an e3nn equivariant GNN → invariant embedding;
* :mod:`xrd_xtalnet.cpcp` — contrastive PXRD–crystal pretraining and its retrieval scores;
* :mod:`xrd_xtalnet.diffusion` — the lattice DDPM and wrapped-normal coordinate diffusion;
* :mod:`xrd_xtalnet.denoiser` — ``CSPDenoiser``, the periodic-invariant denoiser;
* :mod:`xrd_xtalnet.generator` — ``XtalNetGenerator`` (``xtalnet``): fit, load, sampling, ranking;
* :mod:`xrd_xtalnet.baseline` — ``PyxtalRandomGenerator`` (``pyxtal-random``), the non-learned bar.

Scoring (retrieval, match rate and RMSE at both StructureMatcher tolerances) is the core's:
:mod:`xrdcore.generation` and ``xrdcore bench --task generation``.

Nothing is imported here: ``xrdcore`` imports the entry-point module :mod:`xrd_xtalnet.plugin`
on every command, and the implementations (torch, e3nn, pymatgen, pyxtal) only when used.
"""
