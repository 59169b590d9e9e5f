"""xrd-mamba: XRDMamba (Yu et al., CIKM 2024) as an xrdcore encoder plugin.

Nothing is imported here: every ``xrdcore`` command imports :mod:`xrd_mamba.plugin`, and the
encoder (:mod:`xrd_mamba.encoder`) and selective scan (:mod:`xrd_mamba.scan`), which import torch,
only when the encoder is created.
"""
