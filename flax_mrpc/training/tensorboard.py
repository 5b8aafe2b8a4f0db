"""Per-epoch scalars as TensorBoard event files, when tensorboardX is installed
(`pip install '.[tensorboard]'`); without it nothing is written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def _summary_writer_class():
  """tensorboardX's SummaryWriter class, imported without torch: tensorboardX
  imports torch when it can, only to accept torch tensors (seconds and some
  hundred MB for scalars that are Python floats). A later `import torch`
  elsewhere in the process is unaffected. Raises ImportError without
  tensorboardX."""
  masked = "torch" not in sys.modules
  if masked:
    sys.modules["torch"] = None  # makes `import torch` raise ImportError
  try:
    from tensorboardX import SummaryWriter
  finally:
    if masked:
      del sys.modules["torch"]
  return SummaryWriter


class EpochLogger:
  """Writes each epoch record's train loss and its evaluation metrics (every
  dict of numbers in it, e.g. "validation" or "heldout") under `logdir`
  (`tensorboard --logdir WORKDIR/tensorboard`). The writer opens at the
  first record, after the first training step."""

  def __init__(self, logdir: Path | None):
    """`logdir` None writes nothing (processes other than the main one)."""
    self.logdir = logdir
    self._writer = None

  @property
  def writer(self):
    """tensorboardX's SummaryWriter on `logdir`, or None (no logdir or no tensorboardX)."""
    if self._writer is None and self.logdir is not None:
      try:
        summary_writer = _summary_writer_class()
      except ImportError:
        self.logdir = None
      else:
        self._writer = summary_writer(str(self.logdir))
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
