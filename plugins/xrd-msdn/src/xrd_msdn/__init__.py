"""xrd-msdn: MSDN (Tiong et al., shaped zone-axis diffraction patterns in a multistream DenseNet)
as an xrdcore plugin.

Three components: the ``zone-axis`` simulator (:mod:`xrd_msdn.simulator`: kinematic spot patterns
along x, y, z of the conventional cell, :mod:`xrd_msdn.zone_axis`; shaping and drawing,
:mod:`xrd_msdn.shaping`; scattering factors, :mod:`xrd_msdn.scattering`) and the ``msdn`` and
``densenet`` encoders (:mod:`xrd_msdn.densenet`). Nothing is imported here: ``xrdcore`` imports
the entry-point module :mod:`xrd_msdn.plugin` on every command, and the implementations (which
import torch and pymatgen) only when a component is created.
"""
