"""The hooks xrdcore calls when it loads xrd-mamba; imported by every ``xrdcore`` command, so
the encoder is registered by import path and torch is not imported here."""

from xrdcore.hookspecs import hookimpl

#: a small variant for ``xrdcore bench --quick`` and the conformance tests: a forward+backward of
#: a batch of 32 profiles of 1,700 points takes well under 0.3 s on two CPU cores
TINY = {"token_dim": 4, "state_size": 4, "depth": 2, "cnn_channels": (8, 16, 32)}


@hookimpl
def register_encoders(register):
    register("mamba", "xrd_mamba.encoder:MambaEncoder",
             description="XRDMamba (Yu et al. 2024): crystal-plane tokens (angle embedding × intensity), "
                         "8 Mamba blocks, 13-block residual 1-D CNN pooled to length 1; fixed input length.",
             tiny=TINY)
