"""Trains a small model under each parallel mode on 4 fake CPU devices and
writes the results to the .npz named by argv[1]; run by test_parallel.py in a
subprocess, because the device count is fixed when jax starts."""

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from flax_mrpc.config import ModelConfig, TrainConfig  # noqa: E402
from flax_mrpc.data import (
  batching,  # noqa: E402
  packing,
  tokenization,
)
from flax_mrpc.data.epochs import MaskedEpochs  # noqa: E402
from flax_mrpc.training.scoring import predict_probabilities  # noqa: E402
from flax_mrpc.modules import MaskedLM, PairClassifier  # noqa: E402
from flax_mrpc.training import steps
from flax_mrpc.training.optimizer import make_optimizer  # noqa: E402
from flax_mrpc.training.parallel import DataParallel  # noqa: E402

NUM_EXAMPLES, BATCH_SIZE, EPOCHS = 37, 10, 3  # neither divides the next


def split(seed=0) -> tokenization.EncodedSplit:
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, 17, NUM_EXAMPLES)
  mask = (np.arange(16)[None, :] < lengths[:, None]).astype(np.int32)
  return tokenization.EncodedSplit(
      input_ids=rng.integers(5, 60, (NUM_EXAMPLES, 16)).astype(np.int32) * mask,
      token_type_ids=((np.arange(16)[None, :] >= lengths[:, None] // 2) * mask).astype(np.int32),
      attention_mask=mask, match_ids=np.zeros((NUM_EXAMPLES, 16), np.int32),
      labels=rng.integers(0, 2, NUM_EXAMPLES).astype(np.int32), idx=np.arange(NUM_EXAMPLES),
      num_truncated=0)


def epoch_batches(data, epoch: int, pack: bool, num_devices: int):
  """Padded batches of BATCH_SIZE pairs, or packed rows holding as many on average."""
  if not pack:
    order = batching.epoch_order(NUM_EXAMPLES, 0, epoch)
    return batching.batches(data.features(), BATCH_SIZE, order, pad_multiple=16,
                            rows_multiple=num_devices)
  lengths = data.attention_mask.sum(axis=1)
  per_batch = packing.rows_per_batch(len(packing.epoch_rows(lengths, 16, 0, 1)), len(lengths),
                                     BATCH_SIZE)
  return packing.packed_batches(data.features(), packing.epoch_rows(lengths, 16, 0, epoch),
                                per_batch, num_devices)


def run(mode: str, dropout: float, pack: bool) -> dict[str, np.ndarray]:
  config = ModelConfig(vocab_size=60, max_length=16, d_model=16, num_heads=2, d_ff=32,
                       dropout=dropout, attention_dropout=dropout)
  graphdef, params = nnx.split(PairClassifier(config, rngs=nnx.Rngs(0)))
  tx = make_optimizer(TrainConfig(learning_rate=1e-3, warmup_fraction=0.0), 100)
  # The dropout runs draw the layout of bits that sharding draws, so their masks match.
  runner = DataParallel(mode, graphdef, tx, loss=steps.PairLoss(0.5), partitionable_bits=True)
  state = runner.put_state(steps.TrainState.create(params, tx))
  data = split()
  losses, counts = [], []
  for epoch in range(EPOCHS):
    for batch in epoch_batches(data, epoch, pack, runner.num_devices):
      state, metrics = runner.train_step(state, batch, jax.random.key(1))
      losses.append(float(metrics["loss_sum"]))
      counts.append(float(metrics["count"]))
  host = runner.host_state(state)
  probabilities = predict_probabilities(runner.eval_step, host.params, data, 12,
                                        pad_multiple=None if pack else 16, pack=pack)
  leaves = {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(host.params)}
  return {"losses": np.array(losses), "counts": np.array(counts), "step": int(host.step),
          "probabilities": probabilities, "labels": data.labels, **{f"param {k}": v for k, v in leaves.items()}}


def run_masked_lm(mode: str, dropout: float) -> dict[str, np.ndarray]:
  """Masked-LM pretraining steps on the packed, masked batches of `split`."""
  config = ModelConfig(vocab_size=60, max_length=16, d_model=16, num_heads=2, d_ff=32,
                       dropout=dropout, attention_dropout=dropout)
  graphdef, params = nnx.split(MaskedLM(config, rngs=nnx.Rngs(0)))
  train = TrainConfig(learning_rate=1e-3, warmup_fraction=0.0, batch_size=BATCH_SIZE,
                      epochs=EPOCHS, pack=True)
  tx = make_optimizer(train, 100)
  runner = DataParallel(mode, graphdef, tx, loss=steps.MaskedLMLoss(), partitionable_bits=True,
                        evaluate=steps.masked_lm_eval_step)
  epochs = MaskedEpochs(split().features(), train, runner.num_devices, special_ids=[0],
                        mask_id=4, vocab_size=60, mask_rate=0.15)
  state = runner.put_state(steps.TrainState.create(params, tx))
  losses, counts = [], []
  for epoch in range(1, EPOCHS + 1):
    for batch in epochs.batches(epoch):
      state, metrics = runner.train_step(state, batch, jax.random.key(1))
      losses.append(float(metrics["loss_sum"]))
      counts.append(float(metrics["count"]))
  host = runner.host_state(state)
  leaves = {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(host.params)}
  return {"losses": np.array(losses), "counts": np.array(counts), "step": int(host.step),
          **{f"param {k}": v for k, v in leaves.items()}}


if __name__ == "__main__":
  assert jax.device_count() == 4
  results = {}
  # pmap folds the device index into the dropout key, so it is compared without
  # dropout; sharding draws the masks of one device, so it is compared with it.
  runs = [(mode, dropout, pack) for pack in (False, True)
          for mode, dropout in (("none", 0.0), ("pmap", 0.0), ("none", 0.1), ("sharding", 0.1))]
  for mode, dropout, pack in runs:
    for key, value in run(mode, dropout, pack).items():
      results[f"{mode}{'+dropout' if dropout else ''}{'+packed' if pack else ''}/{key}"] = value
  for mode, dropout in (("none", 0.0), ("pmap", 0.0), ("none", 0.1), ("sharding", 0.1)):
    for key, value in run_masked_lm(mode, dropout).items():
      results[f"{mode}{'+dropout' if dropout else ''}+masked_lm/{key}"] = value
  np.savez(sys.argv[1], **results)
