"""Scoring encoded pairs with a compiled eval step: in batches, padded or
packed, in one order or averaged over both (`Config.symmetric_scoring`).
Training scores validation and test with these; `inference.TrainedModel`
scores a user's pairs."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from flax import nnx

from flax_mrpc.data import batching, packing, tokenization
from flax_mrpc.data.examples import Example


def predict_probabilities(
    eval_fn, params: nnx.State, split: tokenization.EncodedSplit, batch_size: int,
    pad_multiple: int | None = None, pack: bool = False,
) -> np.ndarray:
  """What a jitted `steps.eval_step` predicts of each pair of an encoded split,
  in its order: [n] probabilities of the positive class (paraphrase), [n, N]
  class probabilities, or [n] regression scores. With `pad_multiple`, pairs are batched shortest
  first and each batch is cut to its longest pair (see `batching.batches`);
  with `pack`, they are packed into batches of `batch_size` rows (see
  `packing`)."""
  features, lengths = split.features(), split.lengths
  if pack:
    rows = packing.pack_rows(lengths, np.arange(len(split)), features["input_ids"].shape[1])
    order = np.concatenate(rows)
    out = np.concatenate([np.asarray(eval_fn(params, batch))[batch["weights"] > 0] for batch in
                          packing.packed_batches(features, rows, batch_size, lengths=lengths)])
  else:
    order = np.argsort(lengths, kind="stable") if pad_multiple else np.arange(len(split))
    out = np.concatenate([np.asarray(eval_fn(params, batch)) for batch in
                          batching.batches(features, batch_size, order, pad_multiple,
                                           lengths=lengths)])
  probabilities = np.empty((len(split), *out.shape[1:]), np.float32)
  probabilities[order] = out[: len(split)]
  return probabilities


def pair_probabilities(
    eval_fn, params: nnx.State, views: Sequence[tokenization.EncodedSplit], batch_size: int,
    pad_multiple: int | None = None, pack: bool = False,
) -> np.ndarray:
  """The mean of `predict_probabilities` over encodings of the same n pairs:
  one view, or (sentence1, sentence2) and (sentence2, sentence1) for a
  symmetric score (`Config.symmetric_scoring`)."""
  return np.mean([predict_probabilities(eval_fn, params, view, batch_size, pad_multiple, pack)
                  for view in views], axis=0)


def encode_views(tokenizer, examples: Sequence[Example], max_length: int, symmetric: bool,
                 with_match_ids: bool = False) -> list[tokenization.EncodedSplit]:
  """The encodings `pair_probabilities` averages: the pairs as given and, if
  `symmetric`, swapped; `with_match_ids` for a model with a match embedding."""
  return tokenization.encode_in_memory(tokenizer, examples, max_length,
                                       (False, True) if symmetric else (False,), with_match_ids)
