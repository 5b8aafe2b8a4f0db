"""Per-epoch scalars as TensorBoard event files, when tensorboardX is installed
(`pip install '.[tensorboard]'`); without it nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EpochLogger:
  """Writes each epoch record's train loss and its evaluation metrics (every
  dict of numbers in it, e.g. "validation" or "heldout") under `logdir`
  (`tensorboard --logdir WORKDIR/tensorboard`)."""

  def __init__(self, logdir: Path | None):
    """`logdir` None writes nothing (processes other than the main one)."""
    if logdir is None:
      self.writer = None
      return
    try:
      from tensorboardX import SummaryWriter
    except ImportError:
      self.writer = None
    else:
      self.writer = SummaryWriter(str(logdir))

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
    if self.writer is not None:
      self.writer.close()
