"""The hooks xrdcore calls when it loads xrd-decoupler (entry point ``xrd-decoupler``).

Every ``xrdcore`` command imports this module, so it imports nothing but the hook marker: each
component is registered as a ``"module:attr"`` string and imported when it is first created.
"""

from xrdcore.hookspecs import hookimpl

#: a small decoupler for ``xrdcore bench --quick`` and conformance tests: forward + backward of a
#: batch of 32 profiles of 1,700 points (5-90° at 0.05°) in well under 0.3 s on two CPU cores
TINY_ENCODER = {"local_channels": (8, 8), "local_pool": 8, "local_dim": 16, "patch_size": 10,
                "patch_conv_features": 8, "patch_learned_features": 7, "layers": 1, "heads": 2,
                "feedforward": 32}
#: the paper's sizes (64-d embedding) with wider local convolutions: learns on the full CoRE MOF set on
#: 2 CPU cores in well under an hour (docs/training.md)
SMALL_ENCODER = {"local_channels": (32, 32, 32), "local_pool": 4, "local_dim": 64, "feedforward": 128}


@hookimpl
def register_encoders(register):
    register("decoupler", "xrd_decoupler.encoder:DecouplerEncoder", tiny=TINY_ENCODER, small=SMALL_ENCODER,
             description="XRDecoupler (Yu et al. 2026): residual 1-D convs on [sin θ, intensity] (local, 32) "
                         "+ transformer over 10-point patches with empty patches masked (global, 32).")


@hookimpl
def register_label_hierarchies(register):
    register("superclass", "xrd_decoupler.hierarchy:superclass",
             description="Space group + superclass levels (paper: crystal system, Bravais, point group, "
                         "lattice system, arithmetic class; preset='code': 3), beta on the superclasses.")


@hookimpl
def register_loss_schedulers(register):
    register("mgda", "xrd_decoupler.mgda:MGDAScheduler",
             description="MGDA-UB (Sener & Koltun 2018): min-norm convex combination of the per-level "
                         "gradients w.r.t. the embedding; normalisation none/l2/loss/loss+.")
