"""The hooks xrdcore calls when it loads xrd-mamba; imported by every ``xrdcore`` command, so
the encoder is registered by import path and torch is not imported here."""

from xrdcore.hookspecs import hookimpl

#: a small variant for ``xrdcore bench --quick`` and the conformance tests: a forward+backward of
#: a batch of 32 profiles of 1,700 points takes well under 0.3 s on two CPU cores
TINY = {"token_dim": 4, "state_size": 4, "depth": 2, "cnn_channels": (8, 16, 32)}
#: learns on the full CoRE MOF set on 2 CPU cores in well under an hour (docs/training.md): the paper's
#: crystal-plane tokens and Mamba mixer at a small width, and a 6-block residual CNN
SMALL = {"token_dim": 8, "state_size": 8, "depth": 1, "cnn_channels": (16, 32, 64, 128, 128, 256)}


@hookimpl
def register_encoders(register):
    register("mamba", "xrd_mamba.encoder:MambaEncoder",
             description="XRDMamba (Yu et al. 2024): crystal-plane tokens (angle embedding × intensity), "
                         "8 Mamba blocks, 13-block residual 1-D CNN pooled to length 1; fixed input length.",
             tiny=TINY, small=SMALL)
