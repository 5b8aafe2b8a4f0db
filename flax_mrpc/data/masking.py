"""BERT's masked-language-model inputs: which tokens to predict and what the
model sees in their place.

In every row, `mask_rate` of the maskable tokens (real tokens other than
[CLS], [SEP] and padding), rounded, at least one, are chosen uniformly. Of
the chosen tokens 80% become [MASK], 10% a random token of the vocabulary
and 10% stay as they are; the model predicts the original token at every
chosen position. Each row has room for `max_predictions(row_length,
mask_rate)` predictions, so every batch has one static shape; unused slots
have weight 0.
"""

from __future__ import annotations

import math

import numpy as np


def max_predictions(row_length: int, mask_rate: float) -> int:
  """Prediction slots per row of `row_length` tokens: enough for any row."""
  return max(1, math.ceil(row_length * mask_rate))


def mask_tokens(
    input_ids: np.ndarray,
    maskable: np.ndarray,
    rng: np.random.Generator,
    mask_id: int,
    vocab_size: int,
    mask_rate: float = 0.15,
) -> dict[str, np.ndarray]:
  """Chooses and corrupts the tokens to predict.

  Args:
    input_ids: [rows, seq] token ids.
    maskable: [rows, seq] bool, True on tokens that may be chosen.
    rng: the source of every random choice (seed it for a reproducible batch).
    mask_id: the [MASK] token's id.
    vocab_size: random replacements are drawn from ids 0 .. vocab_size - 1.
  Returns:
    input_ids [rows, seq] with the chosen tokens corrupted; mlm_positions,
    mlm_targets (the original ids) and mlm_weights (1 on a chosen token, 0
    on an unused slot), each [rows, max_predictions].
  """
  rows, seq = input_ids.shape
  slots = max_predictions(seq, mask_rate)
  corrupted = input_ids.copy()
  positions = np.zeros((rows, slots), np.int32)
  targets = np.zeros((rows, slots), np.int32)
  weights = np.zeros((rows, slots), np.float32)
  for r in range(rows):
    candidates = np.flatnonzero(maskable[r])
    if not len(candidates):
      continue
    count = min(slots, max(1, round(mask_rate * len(candidates))))
    chosen = np.sort(rng.choice(candidates, count, replace=False))
    positions[r, :count] = chosen
    targets[r, :count] = input_ids[r, chosen]
    weights[r, :count] = 1.0
    action = rng.random(count)
    corrupted[r, chosen[action < 0.8]] = mask_id
    randomised = chosen[(action >= 0.8) & (action < 0.9)]
    corrupted[r, randomised] = rng.integers(0, vocab_size, len(randomised))
  return {"input_ids": corrupted, "mlm_positions": positions, "mlm_targets": targets,
          "mlm_weights": weights}
