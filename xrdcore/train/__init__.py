"""Training: the loop, the model (encoder + one head per level), checkpoints and input settings."""

from xrdcore.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from xrdcore.train.inputs import InputSpec, SplitInputs
from xrdcore.train.model import HierarchicalClassifier
from xrdcore.train.trainer import RunError, TrainConfig, TrainingError, build_model, load_run, train

__all__ = ["CheckpointError", "HierarchicalClassifier", "InputSpec", "RunError", "SplitInputs", "TrainConfig",
           "TrainingError", "build_model", "load_checkpoint", "load_run", "save_checkpoint", "train"]
