"""Per-epoch scalars as TensorBoard event files, when tensorboardX is installed
(`pip install '.[tensorboard]'`); without it nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EpochLogger:
  """Writes each epoch record's train loss and validation metrics under
  `logdir` (`tensorboard --logdir WORKDIR/tensorboard`)."""

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
    for name in ("accuracy", "f1", "precision", "recall"):
      self.writer.add_scalar(f"validation/{name}", record["validation"][name], step)
    self.writer.flush()

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()
