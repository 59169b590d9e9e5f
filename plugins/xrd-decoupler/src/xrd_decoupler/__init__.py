"""xrd-decoupler: XRDecoupler (Yu et al., AAAI 2026, arXiv 2511.06976) as an xrdcore plugin.

Three components, each usable on its own: the ``superclass`` label hierarchy
(:mod:`xrd_decoupler.hierarchy`), the ``mgda`` loss scheduler (:mod:`xrd_decoupler.mgda`) and the
``decoupler`` encoder (:mod:`xrd_decoupler.encoder`). Nothing is imported here: ``xrdcore`` imports
the entry-point module :mod:`xrd_decoupler.plugin` on every command, and the implementations
(which import torch) only when a component is created.
"""
