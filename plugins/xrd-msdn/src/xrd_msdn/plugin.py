"""The hooks xrdcore calls when it loads xrd-msdn (entry point ``xrd-msdn``).

Every ``xrdcore`` command imports this module, so it imports nothing but the hook marker: each
component is registered as a ``"module:attr"`` string and imported when it is first created.
"""

from xrdcore.hookspecs import hookimpl

#: a small DenseNet for ``xrdcore bench --quick`` and conformance tests: forward + backward of a batch
#: of 32 × (3 views, 3 channels, 64 × 64) in well under 0.5 s on two CPU cores
TINY_ENCODER = {"growth_rate": 8, "block_config": (2, 2), "bottleneck": 2}
#: a DenseNet of three short blocks on 64-pixel images: trains on a few thousand structures on 2 CPU
#: cores in well under an hour (msdn: three images per structure; docs/training.md)
SMALL_ENCODER = {"growth_rate": 12, "block_config": (2, 4, 4), "bottleneck": 4}
#: 64-pixel zone-axis images for the small encoders
SMALL_SIMULATOR = {"size": 64}

#: 32-pixel images (the smallest the DenseNet takes) keep `bench --quick` short; every length of the
#: picture is in Å⁻¹, so they show what 224 shows, coarser
TINY_SIMULATOR = {"size": 32}


@hookimpl
def register_encoders(register):
    register("msdn", "xrd_msdn.densenet:MSDNEncoder", tiny=TINY_ENCODER, small=SMALL_ENCODER,
             description="MSDN (Tiong et al.): one DenseNet stream (growth 32, blocks 3-6-12-8) with shared "
                         "weights on each zone-axis image; view_embeddings (B, V, D), forward = their concatenation.")
    register("densenet", "xrd_msdn.densenet:DenseNetEncoder", tiny=TINY_ENCODER, small=SMALL_ENCODER,
             description="Single-stream DenseNet baseline (as msdn's stream) on the zone-axis views merged into "
                         "one image by their elementwise maximum (colours by axis keep them apart).")


@hookimpl
def register_simulators(register):
    register("zone-axis", "xrd_msdn.simulator:ZoneAxisSimulator", tiny=TINY_SIMULATOR, small=SMALL_SIMULATOR,
             description="Kinematic zone-axis spot patterns along x, y, z of the conventional cell (electron or "
                         "X-ray), shaped with lines between near spots (MSDN); images (B, 3, 3, 224, 224).")
