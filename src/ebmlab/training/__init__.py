"""Training: ``fit``, negatives, callbacks, checkpoints and the ``ebmlab train`` command."""

from ebmlab.training import distributed, negatives
from ebmlab.training.callbacks import Callback, CSVLogger, Evaluate, TensorBoardLogger
from ebmlab.training.checkpoint import CheckpointError, latest_checkpoint, read_checkpoint
from ebmlab.training.fit import fit
from ebmlab.training.replay import ReplayBuffer
from ebmlab.training.run import DivergenceError, History, Run, resolve_loss

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
