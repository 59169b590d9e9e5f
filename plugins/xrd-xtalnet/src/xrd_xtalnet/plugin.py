"""The hooks xrdcore calls when it loads xrd-xtalnet (entry point ``xrd-xtalnet``).

Every ``xrdcore`` command imports this module, so it imports nothing but the hook marker: each
component is registered as a ``"module:attr"`` string and imported when it is first created.
"""

from xrdcore.hookspecs import hookimpl

#: a small PXRD encoder for ``xrdcore bench --quick`` and conformance tests: forward + backward of
#: 32 patterns of ~200 peaks in well under 0.3 s on two CPU cores
TINY_PXRD = {"d_model": 32, "layers": 1, "heads": 2, "feedforward": 64}
#: a small e3nn crystal encoder (scalars and vectors, two interactions)
TINY_CRYSTAL = {"embed_dim": 32, "cutoff": 4.0, "lmax": 1, "hidden": "16x0e + 4x1o", "layers": 2,
                "n_basis": 6, "radial_hidden": 16}
TINY_CPCP = {"pxrd": TINY_PXRD, "crystal": TINY_CRYSTAL, "shared_dim": 16}
#: a small generator: untrained tiny diffusion model (50 time steps, 10 sampling steps) + tiny CPCP
TINY_GENERATOR = {"diffusion": {"denoiser": {"hidden": 32, "layers": 1, "frequencies": 4, "time_dim": 16},
                                "timesteps": 50},
                  "cpcp": TINY_CPCP, "steps": 10}


@hookimpl
def register_encoders(register):
    register("xtalnet-pxrd", "xrd_xtalnet.pxrd_encoder:PeakTransformer", tiny=TINY_PXRD,
             description="XtalNet PXRD encoder (Lai et al. 2024): pre-LN transformer over peaks (learned 2θ-bin "
                         "embedding + intensity MLP, CLS token, padding mask); input kind peaks.")


@hookimpl
def register_generators(register):
    register("xtalnet", "xrd_xtalnet.generator:XtalNetGenerator", tiny=TINY_GENERATOR,
             description="XtalNet CCSG: PXRD-conditioned joint diffusion (cosine lattice DDPM + wrapped-normal "
                         "coordinate score matching), predictor-corrector sampling, ranked by CPCP similarity.")
    register("pyxtal-random", "xrd_xtalnet.baseline:PyxtalRandomGenerator", tiny={"space_groups": [1, 2, 225]},
             description="Baseline: pyxtal random crystals of the composition in given space groups (e.g. a "
                         "classifier's top-k), ranked by the same CPCP similarity.")
