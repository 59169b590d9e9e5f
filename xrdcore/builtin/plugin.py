"""The built-in plugin: registers every built-in component by import path, so that loading
the registry (and so every ``xrdcore`` command) imports neither torch nor the implementations."""

from xrdcore.hookspecs import hookimpl

#: variants that learn on the full CoRE MOF set on 2 CPU cores in well under an hour each, on the
#: default input (850 points); parameters and samples/s in docs/training.md
SMALL = {
    "mlp": {"hidden": (1024, 512), "dropout": 0.3},
    "cnn": {"channels": 64, "kernels": (9, 7, 5), "strides": (2, 2, 2), "pool_kernel": 2, "pool_stride": 2,
            "hidden": (512,), "dropout": 0.3},
    "nopoolcnn": {"channels": 64, "kernels": (9, 7, 5), "strides": (2, 2, 2), "hidden": (512,), "dropout": 0.3},
    "rcnet": {"blocks": 8, "kernel_size": 9, "channels": (16, 32, 64, 128)},
}


@hookimpl
def register_label_hierarchies(register):
    register("flat", "xrdcore.builtin.hierarchies:flat", default=True,
             description="Space group only (230 classes): single-task training.")
    register("multilevel", "xrdcore.builtin.hierarchies:multilevel",
             description="Space group plus any superclass levels, each with its own head; "
                         "beta weights the superclasses.")


@hookimpl
def register_loss_schedulers(register):
    register("sum", "xrdcore.builtin.schedulers:SumScheduler", default=True,
             description="Plain sum of the per-level losses.")
    register("weighted", "xrdcore.builtin.schedulers:WeightedScheduler",
             description="Fixed per-level weights (the hierarchy's, e.g. beta, unless given).")


@hookimpl
def register_simulators(register):
    register("pxrd", "xrdcore.builtin.pxrd:PXRDSimulator",
             description="Powder X-ray diffraction profile (kinematic, Cu Ka1) on a 2θ grid (AngleGrid; default: "
                         "the published models' grid).")


@hookimpl
def register_datasets(register):
    register("prototypes", "xrdcore.builtin.datasets:PrototypesDataset",
             description="Default, no download: pymatgen's 288 AFLOW prototypes plus per_group (2) pyxtal "
                         "crystals in each of the 230 space groups, seeded.")
    register("coremof", "xrdcore.builtin.datasets:CoreMOFDataset",
             description="CoRE MOF 2019-ASR, 12,020 MOF CIFs from the core-mof package (CC-BY-4.0).")
    register("synthetic", "xrdcore.builtin.datasets:SyntheticDataset",
             description="size pyxtal crystals balanced over the 230 space groups; seeded, any worker "
                         "count, shard='k/n' for one of n disjoint parts.")
    register("cif-dir", "xrdcore.builtin.datasets:CIFDirectoryDataset",
             description="A folder of .cif files (path, recursive); ids are file stems.")
    register("csv", "xrdcore.builtin.datasets:CSVDataset",
             description="A CSV of CIF strings (path, cif_column='cif', id_column='material_id'), e.g. MP-20.")


@hookimpl
def register_encoders(register):
    register("mlp", "xrdcore.builtin.encoders:MLPEncoder",
             description="Salgado et al. 2023 MLP: profile → 4000 → 3000 → 1000 → 800 (embedding), "
                         "dropout; fixed input length.",
             tiny={"hidden": (256, 128), "dropout": 0.1}, small=SMALL["mlp"])
    register("cnn", "xrdcore.builtin.encoders:CNNEncoder",
             description="Salgado et al. 2023 CNN: conv(80,k100,s5) → conv(80,k50,s5) → conv(80,k25,s2) "
                         "with average pools, then an MLP; fixed input length (≥3500 by default).",
             tiny={"channels": 16, "kernels": (20, 10, 5), "strides": (4, 2, 2), "hidden": (128,)}, small=SMALL["cnn"])
    register("nopoolcnn", "xrdcore.builtin.encoders:NoPoolCNNEncoder",
             description="Salgado et al. 2023 NoPoolCNN: the cnn convolutions without pools, then an MLP; "
                         "fixed input length (≥945 by default).",
             tiny={"channels": 16, "kernels": (20, 10, 5), "strides": (4, 2, 2), "hidden": (128,)},
             small=SMALL["nopoolcnn"])
    register("rcnet", "xrdcore.builtin.encoders:RCNetEncoder",
             description="RCNet-style 1-D pre-activation ResNet (Chen et al. 2024): 16 blocks, kernel 30, "
                         "stride 2 every other block, global average pooling; any input length.",
             tiny={"blocks": 4, "kernel_size": 9, "channels": (8, 16)}, small=SMALL["rcnet"])
