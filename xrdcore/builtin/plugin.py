"""The built-in plugin: registers every built-in component by import path, so that loading
the registry (and so every ``xrdcore`` command) imports neither torch nor the implementations."""

from xrdcore.hookspecs import hookimpl


@hookimpl
def register_label_hierarchies(register):
    register("flat", "xrdcore.builtin.hierarchies:flat",
             description="Space group only (230 classes): single-task training.")
    register("multilevel", "xrdcore.builtin.hierarchies:multilevel",
             description="Space group plus any superclass levels, each with its own head; "
                         "beta weights the superclasses.")


@hookimpl
def register_loss_schedulers(register):
    register("sum", "xrdcore.builtin.schedulers:SumScheduler",
             description="Plain sum of the per-level losses.")
    register("weighted", "xrdcore.builtin.schedulers:WeightedScheduler",
             description="Fixed per-level weights (the hierarchy's, e.g. beta, unless given).")


@hookimpl
def register_simulators(register):
    register("pxrd", "xrdcore.builtin.pxrd:PXRDSimulator",
             description="Powder X-ray diffraction profile (kinematic, Cu Ka1, 5-90 deg at 0.01 deg).")
