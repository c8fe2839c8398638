"""Training: ``fit``, negatives, callbacks, checkpoints and the ``ebmlab train`` command."""

from ebmlab.training import distributed, negatives
from ebmlab.training.callbacks import Callback, CSVLogger, Evaluate, TensorBoardLogger
from ebmlab.training.checkpoint import CheckpointError, latest_checkpoint, read_checkpoint
from ebmlab.training.fit import DivergenceError, History, Run, fit, resolve_loss
from ebmlab.training.replay import ReplayBuffer

__all__ = [
    "fit",
    "History",
    "Run",
    "DivergenceError",
    "resolve_loss",
    "negatives",
    "ReplayBuffer",
    "distributed",
    "Callback",
    "CSVLogger",
    "TensorBoardLogger",
    "Evaluate",
    "CheckpointError",
    "read_checkpoint",
    "latest_checkpoint",
]
