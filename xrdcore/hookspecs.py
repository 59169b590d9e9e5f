"""The hooks a plugin implements. Each receives ``register(name, factory, *, description=None, tiny=None,
small=None)``.

``factory`` builds the component from keyword arguments: a class, a function, or a
``"module:attribute"`` string imported only when the component is first created. ``tiny``
gives the keyword arguments of the smallest variant (e.g. ``{"channels": (8, 16)}``) that
``xrdcore bench --quick`` and the conformance tests build instead of the full-size default;
``small`` those of a variant sized to learn on a real data set on a CPU (``--size small``).

A hook registers the same components on every machine: what it registers may depend on the
plugin's code and the installed distributions, not on a GPU, an environment variable or a file
elsewhere, since ``xrdcore list`` answers from the listing it remembered (:mod:`xrdcore.discovery`)
until one of those changes.
"""

import pluggy

hookspec = pluggy.HookspecMarker("xrdcore")
hookimpl = pluggy.HookimplMarker("xrdcore")


@hookspec
def register_encoders(register):
    """Register encoders (pattern → embedding, :class:`xrdcore.interfaces.Encoder`)."""


@hookspec
def register_label_hierarchies(register):
    """Register label hierarchies (:class:`xrdcore.crystal.LabelHierarchy`)."""


@hookspec
def register_loss_schedulers(register):
    """Register loss schedulers that combine per-level losses (:class:`xrdcore.interfaces.LossScheduler`)."""


@hookspec
def register_simulators(register):
    """Register simulators, structure → model input (:class:`xrdcore.interfaces.Simulator`)."""


@hookspec
def register_generators(register):
    """Register pattern-conditioned structure generators (:class:`xrdcore.interfaces.Generator`)."""


@hookspec
def register_datasets(register):
    """Register structure data sets with provenance (:class:`xrdcore.interfaces.StructureDataset`)."""


@hookspec
def register_models(register):
    """Register pretrained models (:class:`xrdcore.zoo.PretrainedModel`); the factory is usually
    ``xrdcore.zoo.packaged("your_package", "models/NAME")``, a folder shipped as package data."""
