"""The training batches of every epoch, padded or packed, and where each
epoch's steps fall in the run: a pure function of the config, so a resumed
run sees the same batches at the same steps."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from flax_mrpc.config import TrainConfig
from flax_mrpc.data import batching, masking, packing


class TrainEpochs:
  """The batches of epochs 1 .. `train.epochs`.

  Padded (`batching`): every epoch has the same number of steps. Packed
  (`train.pack`, see `packing`): rows of `max_length` tokens, as many per
  batch as hold `batch_size` pairs on average; every epoch packs the same
  lengths into the same number of rows (`packing.pack_rows`), so it too
  has the same number of steps.

  Args:
    features: the train arrays of `tokenization.EncodedSplit.features`
      (memory-mapped ones are read a batch at a time).
    train: the run's TrainConfig.
    rows_multiple: every batch's rows are a multiple of this (the device count).
    lengths: [n] real tokens per pair (`EncodedSplit.lengths`); None: from
      the attention mask.
  """

  def __init__(self, features: dict[str, np.ndarray], train: TrainConfig, rows_multiple: int,
               lengths: np.ndarray | None = None):
    self.features, self.train, self.rows_multiple = features, train, rows_multiple
    self.lengths = (features["attention_mask"].sum(axis=1, dtype=np.int32) if lengths is None
                    else np.asarray(lengths))
    self.row_length = features["input_ids"].shape[1]
    self._packed: tuple[int, list[np.ndarray]] | None = None
    if train.pack:
      num_rows = len(self._rows(1))
      self.rows_per_batch = packing.rows_per_batch(num_rows, len(self.lengths), train.batch_size)
      self.steps = [batching.num_batches(num_rows, self.rows_per_batch)] * train.epochs
    else:
      self.steps = [batching.num_batches(len(self.lengths), train.batch_size)] * train.epochs

  def _rows(self, epoch: int) -> list[np.ndarray]:
    """The packed rows of `epoch`; the latest epoch's are kept, since the
    first one is asked for by the step count, the memory check and the
    epoch itself, and packing 400k pairs takes a second."""
    if self._packed is None or self._packed[0] != epoch:
      self._packed = (epoch, packing.epoch_rows(self.lengths, self.row_length, self.train.seed,
                                                epoch))
    return self._packed[1]

  @property
  def total_steps(self) -> int:
    return sum(self.steps)

  def steps_before(self, epoch: int) -> int:
    """The run's step count when `epoch` (1-based) starts."""
    return sum(self.steps[:epoch - 1])

  def batches(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    """The batches of `epoch`, in order."""
    tc = self.train
    if tc.pack:
      return packing.packed_batches(self.features, self._rows(epoch), self.rows_per_batch,
                                    self.rows_multiple, self.lengths)
    if tc.group_by_length:
      order = batching.length_grouped_order(self.lengths, tc.batch_size, tc.seed, epoch)
    else:
      order = batching.epoch_order(len(self.lengths), tc.seed, epoch)
    return batching.batches(self.features, tc.batch_size, order, tc.pad_multiple,
                            self.rows_multiple, self.lengths)

  def describe(self) -> str:
    """One line for the log: steps per epoch and, packed, the batch layout."""
    steps = f"{self.steps[0]} steps per epoch"
    if not self.train.pack:
      return steps
    return (f"{steps}; packed: {self.rows_per_batch} rows of {self.row_length} tokens per "
            f"batch hold {self.train.batch_size} pairs on average")


class MaskedEpochs(TrainEpochs):
  """Packed epochs of corpus pairs with BERT's masking (`flax_mrpc.data.masking`)
  added to each batch; batch i of epoch e is masked with the random stream
  (seed, e, i), so a resumed run masks exactly as before.

  Args:
    features, train, rows_multiple: as for TrainEpochs (`train.pack` is on).
    special_ids: ids that are never masked ([CLS], [SEP], [PAD]).
    mask_id: the [MASK] id.
    vocab_size: random replacements come from ids below it (the tokenizer's size).
    mask_rate: the share of maskable tokens predicted.
  """

  def __init__(self, features: dict[str, np.ndarray], train: TrainConfig, rows_multiple: int,
               special_ids: list[int], mask_id: int, vocab_size: int, mask_rate: float):
    super().__init__(features, train, rows_multiple)
    self.special_ids, self.mask_id = np.asarray(special_ids), mask_id
    self.vocab_size, self.mask_rate = vocab_size, mask_rate

  def batches(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    for i, batch in enumerate(super().batches(epoch)):
      yield self.mask(batch, np.random.default_rng([self.train.seed, epoch, i, 2]))

  def mask(self, batch: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`batch` with its tokens masked and the mlm_* arrays added."""
    maskable = (batch["attention_mask"] > 0) & ~np.isin(batch["input_ids"], self.special_ids)
    return batch | masking.mask_tokens(batch["input_ids"], maskable, rng, self.mask_id,
                                       self.vocab_size, self.mask_rate)
