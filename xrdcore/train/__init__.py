"""Training: the loop, the model (encoder + one head per level), checkpoints, input settings, and
:func:`run_config`, the one way from options to a run."""

from xrdcore.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from xrdcore.train.config import TrainConfig, run_config
from xrdcore.train.inputs import InputSpec, SplitInputs
from xrdcore.train.model import HierarchicalClassifier
from xrdcore.train.trainer import RunError, TrainingError, build_model, load_run, train

__all__ = ["CheckpointError", "HierarchicalClassifier", "InputSpec", "RunError", "SplitInputs", "TrainConfig",
           "TrainingError", "build_model", "load_checkpoint", "load_run", "run_config", "save_checkpoint", "train"]
