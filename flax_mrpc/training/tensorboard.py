"""Per-epoch scalars as TensorBoard event files, when tensorboardX is installed
(`pip install '.[tensorboard]'`); without it nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EpochLogger:
  """Writes each epoch record's train loss and its evaluation metrics (every
  dict of numbers in it, e.g. "validation" or "heldout") under `logdir`
  (`tensorboard --logdir WORKDIR/tensorboard`). The writer opens at the
  first record: tensorboardX imports torch when torch is installed
  (seconds), which the first training step should not wait for."""

  def __init__(self, logdir: Path | None):
    """`logdir` None writes nothing (processes other than the main one)."""
    self.logdir = logdir
    self._writer = None

  @property
  def writer(self):
    """tensorboardX's SummaryWriter on `logdir`, or None (no logdir or no tensorboardX)."""
    if self._writer is None and self.logdir is not None:
      try:
        from tensorboardX import SummaryWriter
      except ImportError:
        self.logdir = None
      else:
        self._writer = SummaryWriter(str(self.logdir))
    return self._writer

  def write(self, record: dict[str, Any]) -> None:
    if self.writer is None:
      return
    step = record["step"]
    self.writer.add_scalar("train/loss", record["train_loss"], step)
    for group, metrics in record.items():
      if isinstance(metrics, dict):
        for name, value in metrics.items():
          self.writer.add_scalar(f"{group}/{name}", value, step)
    self.writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
