"""Gradient accumulation, rematerialised layers, fsdp's layout and the
memory check, on one device (fsdp on 4 devices: test_fsdp.py)."""

import dataclasses
import functools

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec

from flax_mrpc.config import ModelConfig, TrainConfig, get_preset
from flax_mrpc.data import batching, packing
from flax_mrpc.modules import PairClassifier
from flax_mrpc.training import memory, parallel, steps
from flax_mrpc.training.optimizer import make_optimizer

CONFIG = ModelConfig(vocab_size=50, max_length=16, d_model=16, num_heads=2, d_ff=32, num_layers=2,
                     dropout=0.0, attention_dropout=0.0)
ONE_LAYER = dataclasses.replace(CONFIG, num_layers=1)
PAIRS = 24


def _features(seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, 9, PAIRS)
  mask = (np.arange(16)[None, :] < lengths[:, None]).astype(np.int32)
  return {"input_ids": rng.integers(5, 50, (PAIRS, 16)).astype(np.int32) * mask,
          "token_type_ids": ((np.arange(16)[None, :] >= lengths[:, None] // 2) * mask
                             ).astype(np.int32),
          "attention_mask": mask, "labels": rng.integers(0, 2, PAIRS).astype(np.int32)}


def _batches(pack: bool, batch_size: int, rows_multiple: int):
  features = _features()
  lengths = features["attention_mask"].sum(axis=1)
  if not pack:
    return list(batching.batches(features, batch_size, rows_multiple=rows_multiple))
  rows = packing.epoch_rows(lengths, 16, 0, 1)
  per_batch = packing.rows_per_batch(len(rows), len(lengths), batch_size)
  return list(packing.packed_batches(features, rows, per_batch, rows_multiple, lengths))


def _train(accumulate_steps: int, pack: bool):
  graphdef, params = nnx.split(PairClassifier(ONE_LAYER, rngs=nnx.Rngs(0)))
  tx = make_optimizer(TrainConfig(learning_rate=1e-2, warmup_fraction=0.0), 10)
  step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx,
                                   loss=steps.PairLoss(), accumulate_steps=accumulate_steps))
  state, counts = steps.TrainState.create(params, tx), []
  for batch in _batches(pack, 12, accumulate_steps):
    state, metrics = step(state, batch, jax.random.key(0))
    counts.append(float(metrics["count"]))
  return state, counts


@pytest.mark.parametrize("pack", [False, True])
def test_accumulated_micro_batches_equal_one_big_batch(pack):
  big, big_counts = _train(1, pack)
  accumulated, counts = _train(4, pack)
  assert counts == big_counts and sum(counts) == PAIRS  # loss weights count pairs, not rows
  assert int(accumulated.step) == int(big.step) == len(counts)  # one optimizer step per batch
  for a, b in zip(jax.tree.leaves(accumulated.params), jax.tree.leaves(big.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_a_batch_that_does_not_split_into_micro_batches_is_refused():
  batch = next(iter(batching.batches(_features(), 6)))
  graphdef, params = nnx.split(PairClassifier(CONFIG, rngs=nnx.Rngs(0)))
  tx = make_optimizer(TrainConfig(), 10)
  with pytest.raises(ValueError, match="does not split into 4 micro-batches"):
    steps.train_step(steps.TrainState.create(params, tx), batch, jax.random.key(0),
                     graphdef=graphdef, tx=tx, loss=steps.PairLoss(), accumulate_steps=4)


def test_remat_gives_the_plain_gradients_with_dropout():
  model = dataclasses.replace(CONFIG, dropout=0.2, attention_dropout=0.2)
  batch = next(iter(batching.batches(_features(), 8)))

  def gradients(remat: bool):
    graphdef, params = nnx.split(PairClassifier(dataclasses.replace(model, remat=remat),
                                                rngs=nnx.Rngs(0)))
    loss = lambda p: steps.PairLoss()(nnx.merge(graphdef, p), batch,
                                      nnx.Rngs(dropout=jax.random.key(3)))[0]
    return jax.jit(jax.grad(loss))(params)

  plain, remat = gradients(False), gradients(True)
  leaves = list(zip(jax.tree.leaves(plain), jax.tree.leaves(remat)))
  assert len(leaves) > 10
  for a, b in leaves:
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6)
  assert any(np.abs(np.asarray(a)).max() > 1e-3 for a, _ in leaves)


def test_remat_recomputes_the_layers_in_the_backward_pass():
  batch = next(iter(batching.batches(_features(), 8)))
  graphdef, params = nnx.split(PairClassifier(dataclasses.replace(CONFIG, remat=True),
                                              rngs=nnx.Rngs(0)))
  loss = lambda p: steps.PairLoss()(nnx.merge(graphdef, p), batch, None)[0]
  assert "remat" in str(jax.make_jaxpr(jax.grad(loss))(params))


@pytest.mark.parametrize("shape, devices, spec", [
    ((50368, 1024), 8, PartitionSpec("data")),         # the larger dimension
    ((768, 3072), 8, PartitionSpec(None, "data")),
    ((30522, 768), 8, PartitionSpec(None, "data")),    # 30522 does not divide by 8
    ((768,), 8, PartitionSpec()),                      # small: replicated
    ((4097, 3), 4, PartitionSpec()),                   # nothing divides: replicated
    ((), 4, PartitionSpec()),
    ((512, 512), 1, PartitionSpec()),
])
def test_fsdp_splits_each_array_along_its_largest_even_dimension(shape, devices, spec):
  assert parallel.fsdp_spec(shape, devices) == spec


def test_the_xla_figure_falls_with_micro_batches():
  config = get_preset("tiny").replace(batch_size=64)
  plain = memory.need(config, "none")
  assert plain.source == "xla" and plain.mode == "none"
  accumulated = memory.need(config.replace(accumulate_steps=4), "none")
  assert accumulated.bytes_per_device < plain.bytes_per_device
  # At least the float32 parameters, their gradients and AdamW's two moments.
  assert plain.bytes_per_device > 4 * 4 * memory.parameter_count(config.model)


def test_a_run_that_cannot_fit_is_refused_before_any_step_naming_a_change_that_fits(
    mrpc_dir, tmp_path, monkeypatch):
  from flax_mrpc import train

  config = get_preset("tiny").replace(epochs=1, train_fraction=0.1, batch_size=64)
  change = config.replace(accumulate_steps=2)
  available = memory.need(change, "none").bytes_per_device
  monkeypatch.setattr(memory, "available_bytes", lambda: available)
  with pytest.raises(ValueError) as refused:
    train.train_and_evaluate(config, tmp_path / "run", data_dir=mrpc_dir, progress=False)
  message = str(refused.value)
  assert "per device (XLA, --parallel none)" in message
  assert "With --set accumulate_steps=2 it fits" in message
  assert not (tmp_path / "run" / "checkpoints").exists()
  assert memory.need(change, "none").fits  # the check the named change then passes
