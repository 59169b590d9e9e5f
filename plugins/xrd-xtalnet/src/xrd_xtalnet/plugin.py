"""The hooks xrdcore calls when it loads xrd-xtalnet (entry point ``xrd-xtalnet``).

Every ``xrdcore`` command imports this module, so it imports nothing but the hook marker: each
component is registered as a ``"module:attr"`` string and imported when it is first created.
"""

from xrdcore.hookspecs import hookimpl

#: a small PXRD encoder for ``xrdcore bench --quick`` and conformance tests, on the strongest 128
#: peaks of a pattern (attention is quadratic in peaks and a batch is padded to its longest list: a
#: few patterns have 700+ peaks, which made one quick classification run take minutes)
TINY_PXRD = {"d_model": 32, "layers": 1, "heads": 2, "feedforward": 64, "max_peaks": 128}
#: XtalNet's PXRD transformer at 1/8 width and 2 layers on the strongest 256 peaks: learns on the full
#: CoRE MOF set on 2 CPU cores in well under an hour (docs/training.md)
SMALL_PXRD = {"d_model": 64, "layers": 2, "heads": 4, "feedforward": 128, "max_peaks": 128}
#: a small e3nn crystal encoder (scalars and vectors, two interactions)
TINY_CRYSTAL = {"embed_dim": 32, "cutoff": 4.0, "lmax": 1, "hidden": "16x0e + 4x1o", "layers": 2,
                "n_basis": 6, "radial_hidden": 16}
#: a small CPCP model
TINY_CPCP = {"pxrd": TINY_PXRD, "crystal": TINY_CRYSTAL, "shared_dim": 16}
#: a few CPCP epochs: the tiny variants are for plumbing and quick harness runs, not for numbers
TINY_CPCP_TRAINING = {"epochs": 4, "batch_size": 32, "lr": 1e-3}
TINY_DIFFUSION = {"denoiser": {"hidden": 32, "layers": 1, "frequencies": 4, "time_dim": 16}, "timesteps": 50}
TINY_TRAINING = {"epochs": 10, "batch_size": 32, "val_draws": 1}
#: ``xtalnet --tiny``: tiny CPCP and diffusion, few epochs, 10 sampling steps, at most 20 atoms
TINY_GENERATOR = {"cpcp": TINY_CPCP, "cpcp_training": TINY_CPCP_TRAINING, "diffusion": TINY_DIFFUSION,
                  "training": TINY_TRAINING, "max_atoms": 20, "steps": 10}
#: ``pyxtal-random --tiny``: the same CPCP stage as ``xtalnet --tiny`` (same model for the same seed)
TINY_BASELINE = {"cpcp": TINY_CPCP, "cpcp_training": TINY_CPCP_TRAINING, "max_atoms": 20, "top_k": 5}


@hookimpl
def register_encoders(register):
    register("xtalnet-pxrd", "xrd_xtalnet.pxrd_encoder:PeakTransformer", tiny=TINY_PXRD, small=SMALL_PXRD,
             description="XtalNet PXRD encoder (Lai et al. 2024): pre-LN transformer over peaks (learned 2θ-bin "
                         "embedding + intensity MLP, CLS token, padding mask); input kind peaks.")


@hookimpl
def register_generators(register):
    register("xtalnet", "xrd_xtalnet.generator:XtalNetGenerator", tiny=TINY_GENERATOR,
             description="XtalNet CCSG: CPCP contrastive pretraining, then PXRD-conditioned joint diffusion (cosine "
                         "lattice DDPM + wrapped-normal coordinate score matching), predictor-corrector sampling, "
                         "candidates ranked by CPCP similarity.")
    register("pyxtal-random", "xrd_xtalnet.baseline:PyxtalRandomGenerator", tiny=TINY_BASELINE,
             description="Baseline: pyxtal random crystals of the composition in the top-k space groups of a "
                         "retrieval classifier (nearest training structures by CPCP embedding), ranked by the same "
                         "CPCP similarity.")
