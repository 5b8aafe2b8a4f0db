"""Packed batches: several pairs per row of one static length, as TPUs want.

Padding every pair to `max_length` wastes most of a row on MRPC (pairs
average about 54 tokens), and cutting each batch to its longest pair gives
one compiled shape per length. Packing puts pairs one after another into
rows of exactly `row_length` tokens, as t5x, MaxText and levanter do: one
compiled shape, and almost no padding.

A packed batch is `rows` rows of `row_length` tokens and `PAIRS_PER_ROW` pair
slots per row:

  input_ids, token_type_ids, match_ids  [rows, row_length] each pair's own
  attention_mask   [rows, row_length] segment ids: k on the k-th pair's
                   tokens (1, 2, ...), 0 on padding; attention stays inside
                   a segment (`modules.MultiHeadAttention`)
  positions        [rows, row_length] 0, 1, ... restarting at each pair
  first_positions  [rows, PAIRS_PER_ROW] where each pair starts: its [CLS]
                   or <s>, whose state gives the pair's logit
  labels, weights  [rows, PAIRS_PER_ROW] per slot; weights is 1 on a real
                   pair and 0 on an empty slot

The number of pairs per batch varies; losses and metrics are weighted sums
over slots, so they stay exact.
"""

from __future__ import annotations

import functools
from typing import Iterator

import numpy as np

from flax_mrpc.data import batching

PAIRS_PER_ROW = 8  # slots per row; MRPC pairs are rarely shorter than 16 tokens


def pack_rows(lengths: np.ndarray, order: np.ndarray, row_length: int,
              pairs_per_row: int = PAIRS_PER_ROW) -> list[np.ndarray]:
  """Best-fit decreasing: the pairs of `order`, longest first (ties in
  `order`'s order), each into the open row with the least room that still
  holds it, else into a new row; a row closes at `pairs_per_row` pairs.

  Where each pair lands depends only on the sequence of lengths, longest
  first, which every order of the same pairs shares: `best_fit_rows`
  computes it once per set of lengths, and an order only decides which of
  the equally long pairs takes which place.

  Args:
    lengths: [n] tokens per pair, each at most `row_length`.
    order: the pair indices to pack.
  Returns:
    The rows, in the order they were opened, as arrays of pair indices.
  """
  if lengths.max(initial=0) > row_length:
    raise ValueError(f"a pair of {lengths.max()} tokens does not fit a row of {row_length}: "
                     "truncate the pairs to the row length first.")
  placed = order[np.argsort(-lengths[order], kind="stable")]
  row_of = best_fit_rows(np.ascontiguousarray(lengths[placed], np.int64).tobytes(), row_length,
                         pairs_per_row)
  by_row = np.argsort(row_of, kind="stable")
  return np.split(placed[by_row].astype(np.int64), np.cumsum(np.bincount(row_of))[:-1])


@functools.lru_cache(maxsize=4)
def best_fit_rows(descending_lengths: bytes, row_length: int, pairs_per_row: int) -> np.ndarray:
  """[n] the row (numbered as opened) of each pair of `descending_lengths`
  (int64 bytes, longest first) under best-fit decreasing. Open rows are
  kept by free room, and a bit mask of the rooms that have one finds the
  least room that still holds a pair without a scan."""
  lengths = np.frombuffer(descending_lengths, np.int64)
  row_of = np.empty(len(lengths), np.int64)
  open_by_room: list[list[int]] = [[] for _ in range(row_length + 1)]  # row ids by free tokens
  rooms_open = 0  # bit r is set while open_by_room[r] is not empty
  pairs_in_row: list[int] = []
  for pair, length in enumerate(lengths.tolist()):
    fitting = rooms_open >> length
    if fitting:
      room = length + (fitting & -fitting).bit_length() - 1
      row = open_by_room[room].pop()
      if not open_by_room[room]:
        rooms_open &= ~(1 << room)
    else:
      row, room = len(pairs_in_row), row_length
      pairs_in_row.append(0)
    row_of[pair] = row
    pairs_in_row[row] += 1
    if pairs_in_row[row] < pairs_per_row:
      open_by_room[room - length].append(row)
      rooms_open |= 1 << (room - length)
  return row_of


def epoch_rows(lengths: np.ndarray, row_length: int, seed: int, epoch: int) -> list[np.ndarray]:
  """The packed rows of one training epoch, in a shuffled order: a pure
  function of (seed, epoch), so an exact resume stays exact. Which pairs
  share a row changes with the epoch's shuffle (it breaks length ties)."""
  rows = pack_rows(lengths, batching.epoch_order(len(lengths), seed, epoch), row_length)
  return [rows[i] for i in np.random.default_rng([seed, epoch, 1]).permutation(len(rows))]


def rows_per_batch(num_rows: int, num_pairs: int, batch_size: int) -> int:
  """Rows per packed batch that hold `batch_size` pairs on average, when
  `num_pairs` pairs pack into `num_rows` rows (the first epoch's
  `epoch_rows`), so a packed step sees as many pairs as an unpacked one and
  the recipe's number of steps stays about the same."""
  return max(1, round(batch_size * num_rows / num_pairs))


def packed_batches(
    features: dict[str, np.ndarray],
    rows: list[np.ndarray],
    rows_per_batch: int,
    rows_multiple: int = 1,
    lengths: np.ndarray | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields the packed batches (the module docstring's arrays) of `rows`, in
  order, `rows_per_batch` of them each (fewer in the last batch), plus empty
  rows up to a multiple of `rows_multiple`: the same batches on any number
  of devices.

  Args:
    features: [n, row_length] `input_ids`, `token_type_ids`, `attention_mask`
      (1 on real tokens, which come first), `match_ids` (optional), and [n]
      `labels`; any integer types (the batches are int32).
    rows: pair indices per row, e.g. from `pack_rows`.
    lengths: [n] real tokens per pair; None: from the attention mask.
  """
  row_length = features["input_ids"].shape[1]
  if lengths is None:
    lengths = features["attention_mask"].sum(axis=1)
  num_rows = batching.round_up(rows_per_batch, rows_multiple)
  token_names = [name for name in ("input_ids", "token_type_ids", "match_ids")
                 if name in features]
  for start in range(0, len(rows), rows_per_batch):
    batch = {name: np.zeros((num_rows, row_length), np.int32)
             for name in (*token_names, "attention_mask", "positions")}
    batch["first_positions"] = np.zeros((num_rows, PAIRS_PER_ROW), np.int32)
    batch["labels"] = np.zeros((num_rows, PAIRS_PER_ROW), features["labels"].dtype)
    batch["weights"] = np.zeros((num_rows, PAIRS_PER_ROW), np.float32)
    for r, row in enumerate(rows[start:start + rows_per_batch]):
      offset = 0
      for slot, pair in enumerate(row):
        length = lengths[pair]
        tokens = slice(offset, offset + length)
        for name in token_names:
          batch[name][r, tokens] = features[name][pair, :length]
        batch["attention_mask"][r, tokens] = slot + 1
        batch["positions"][r, tokens] = np.arange(length)
        batch["first_positions"][r, slot] = offset
        batch["labels"][r, slot] = features["labels"][pair]
        batch["weights"][r, slot] = 1.0
        offset += length
    yield batch
