"""How long does one jitted train step of a preset take on this machine?

Command: PYTHONPATH=. python experiments/benchmarks/step_time.py --preset seed
Machine: any JAX backend; prints compile time, milliseconds per step and
         training examples per second on random token batches of the preset's
         batch size and max_length (about a minute on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import numpy as np
from flax import nnx

from flax_mrpc import steps
from flax_mrpc.config import get_preset
from flax_mrpc.modules import PairClassifier
from flax_mrpc.optim import make_optimizer


def random_batch(batch_size: int, max_length: int, vocab_size: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  shape = (batch_size, max_length)
  return {
      "input_ids": rng.integers(5, vocab_size, shape).astype(np.int32),
      "token_type_ids": np.repeat([[0] * (max_length // 2) + [1] * (max_length - max_length // 2)],
                                  batch_size, axis=0).astype(np.int32),
      "attention_mask": np.ones(shape, np.int32),
      "match_ids": rng.integers(0, 2, shape).astype(np.int32),
      "labels": rng.integers(0, 2, batch_size).astype(np.int32),
      "weights": np.ones(batch_size, np.float32),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="default")
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  config = get_preset(args.preset)
  mc, tc = config.model, config.train
  graphdef, params = nnx.split(PairClassifier(mc, rngs=nnx.Rngs(0)))
  tx = make_optimizer(tc, 1000)
  state = steps.TrainState.create(params, tx)
  step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx,
                                   pos_weight=tc.pos_weight), donate_argnums=0)
  batch = random_batch(tc.batch_size, mc.max_length, mc.vocab_size)
  rng = jax.random.key(0)
  start = time.perf_counter()
  state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics)
  per_step = (time.perf_counter() - start) / args.steps
  print(f"preset {args.preset} on {jax.devices()[0].device_kind}: "
        f"{steps.param_count(params):,} parameters, batch {tc.batch_size} x {mc.max_length}")
  print(f"compile + first step {compile_s:.1f} s; {per_step * 1e3:.1f} ms per step; "
        f"{tc.batch_size / per_step:,.0f} examples/s")


if __name__ == "__main__":
  main()
