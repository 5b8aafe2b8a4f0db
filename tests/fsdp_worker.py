"""Runs fsdp on 4 fake CPU devices and writes what test_fsdp.py checks to
the .npz named by argv[1]: fsdp's and sharding's parameters after the same
packed steps (and fsdp's with 2 micro-batches per step), the shard shapes of
fsdp's state, a run resumed from an fsdp checkpoint beside the
uninterrupted one, what `--parallel auto` picks for a model too large to
replicate, and a `train` workdir in argv[2] (MRPC from argv[3]). A
subprocess, because the device count is fixed when jax starts."""

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from flax_mrpc import train  # noqa: E402
from flax_mrpc.config import ModelConfig, TrainConfig, get_preset  # noqa: E402
from flax_mrpc.modules import PairClassifier  # noqa: E402
from flax_mrpc.training import memory, steps  # noqa: E402
from flax_mrpc.training.checkpoint import Checkpointer  # noqa: E402
from flax_mrpc.training.optimizer import make_optimizer  # noqa: E402
from flax_mrpc.training.parallel import DataParallel, initialisation_device  # noqa: E402
from parallel_worker import epoch_batches, split  # noqa: E402

# Wide enough that fsdp shards the kernels and embeddings (parallel.MIN_SHARDED_SIZE).
MODEL = ModelConfig(vocab_size=128, max_length=16, d_model=64, num_heads=4, d_ff=128,
                    num_layers=2, dropout=0.0, attention_dropout=0.0)


def start(mode: str, model: ModelConfig = MODEL, accumulate_steps: int = 1):
  with initialisation_device(mode):
    graphdef, params = nnx.split(PairClassifier(model, rngs=nnx.Rngs(0)))
    tx = make_optimizer(TrainConfig(learning_rate=1e-3, warmup_fraction=0.0), 100)
    state = steps.TrainState.create(params, tx)
  runner = DataParallel(mode, graphdef, tx, loss=steps.PairLoss(),
                        accumulate_steps=accumulate_steps)
  return runner, state


def batches(rows_multiple: int = 4):
  return [batch for epoch in range(2)
          for batch in epoch_batches(split(), epoch, True, rows_multiple)]


def leaves(tree, prefix: str) -> dict[str, np.ndarray]:
  return {f"{prefix} {jax.tree_util.keystr(path)}": np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def train_steps(mode: str, accumulate_steps: int = 1) -> tuple[DataParallel, steps.TrainState]:
  runner, state = start(mode, accumulate_steps=accumulate_steps)
  state = runner.put_state(state)
  for batch in batches(runner.rows_multiple):
    state, _ = runner.train_step(state, batch, jax.random.key(1))
  return runner, state


def shard_shapes(state: steps.TrainState) -> dict[str, np.ndarray]:
  """[devices, ndim] shapes of each device's piece of every parameter and moment."""
  trees = {"params": state.params, "opt_state": state.opt_state}
  return {f"shards {name} {jax.tree_util.keystr(path)}":
          np.array([shard.data.shape for shard in leaf.addressable_shards]).reshape(4, -1)
          for name, tree in trees.items()
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree) if leaf.ndim}


def resumed(folder: str) -> dict[str, np.ndarray]:
  """An fsdp run with dropout stopped after 5 steps, checkpointed and resumed,
  beside the uninterrupted run."""
  model = ModelConfig(**{**MODEL.__dict__, "dropout": 0.1, "attention_dropout": 0.1})
  runner, state = start("fsdp", model)
  template, state = state, runner.put_state(state)
  checkpointer = Checkpointer(folder)
  for i, batch in enumerate(batches()):
    if i == 5:
      checkpointer.save(state, {"note": "step 5"})
      checkpointer.wait()
    state, _ = runner.train_step(state, batch, jax.random.key(1))
  runner, _ = start("fsdp", model)
  restored = checkpointer.restore(5, runner.restore_target(template)).state
  checkpointer.close()
  restored_shards = shard_shapes(restored)
  restored = runner.put_state(restored)
  for batch in batches()[5:]:
    restored, _ = runner.train_step(restored, batch, jax.random.key(1))
  return {**leaves(state.params, "uninterrupted"), **leaves(restored.params, "resumed"),
          **{f"restored {k}": v for k, v in restored_shards.items()}}


def auto_mode() -> dict[str, np.ndarray]:
  """What `--parallel auto` picks for a model whose state outweighs its
  activations when one device holds less than the replicated step needs
  but more than fsdp's, and the two figures."""
  config = get_preset("tiny").replace(vocab_size=8192, d_model=64, d_ff=128, max_length=16,
                                      batch_size=4)
  tx = make_optimizer(config.train, 10)
  graphdef, state = memory.abstract_train_state(config.model, tx)
  batch = memory.abstract_batch(config, 4)
  make_runner = lambda mode: DataParallel(mode, graphdef, tx, steps.PairLoss())
  needs = {mode: memory.step_need(config, make_runner(mode), state, batch).bytes_per_device
           for mode in ("sharding", "fsdp")}
  memory.available_bytes = lambda: (needs["sharding"] + needs["fsdp"]) // 2
  runner, _ = memory.checked_runner(config, "auto", make_runner, state, batch)
  return {"auto picks": np.array(runner.mode), **{f"need {k}": np.array(v)
                                                   for k, v in needs.items()}}


if __name__ == "__main__":
  assert jax.device_count() == 4
  out, workdir, mrpc_dir = sys.argv[1:4]
  results = {}
  for mode in ("sharding", "fsdp"):
    _, state = train_steps(mode)
    results |= leaves(state.params, mode)
    if mode == "fsdp":
      results |= shard_shapes(state)
  _, state = train_steps("fsdp", accumulate_steps=2)
  results |= leaves(state.params, "fsdp+accumulate")
  results |= resumed(os.path.join(os.path.dirname(out), "checkpoints"))
  results |= auto_mode()
  config = get_preset("tiny").replace(d_model=64, d_ff=128, epochs=1, train_fraction=0.25)
  train.train_and_evaluate(config, workdir, data_dir=mrpc_dir, progress=False,
                           parallel_mode="fsdp")
  np.savez(out, **results)
