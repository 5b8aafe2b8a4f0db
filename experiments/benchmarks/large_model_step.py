"""Training steps of a large encoder on one device in bfloat16, with or
without remat: examples/s, what XLA says the step needs, and the device's
peak memory. gpu_suite.py's large_model stage runs it on the largest model
of large_models.MODELS that fits the card.

Command (one configuration per process, so that each peak is its own):
    PYTHONPATH=. python experiments/benchmarks/large_model_step.py --model eurobert-2.1b \
        [--remat] [--steps 5] [--json FILE]
    --smoke: the model's family at 2 layers, 64 wide, 64 tokens, 4 pairs (any CPU).
Exit status 3 when the step does not fit the device; its record then holds
only what XLA says it needs. Random weights and token ids (the model's
shape is all that matters here), float32 parameters and AdamW state,
bfloat16 compute, 32 pairs of 512 tokens per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from large_models import MODELS, model_config  # noqa: E402

from flax_mrpc.modules import PairClassifier  # noqa: E402
from flax_mrpc.training import memory, parallel, steps  # noqa: E402
from flax_mrpc.training.optimizer import make_optimizer  # noqa: E402

EXIT_DOES_NOT_FIT = 3
SMOKE_SHAPE = dict(d_model=64, num_heads=4, d_ff=128, num_layers=2, max_length=64, batch_size=4)


def configuration(name: str, remat: bool, smoke: bool):
  config = model_config(name).replace(dtype="bfloat16", remat=remat)
  if smoke:
    heads = dict(num_kv_heads=SMOKE_SHAPE["num_heads"]) if config.model.num_kv_heads else {}
    config = config.replace(**SMOKE_SHAPE, **heads)
  return config


def random_batch(config, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
  """`memory.abstract_batch`'s arrays filled with random tokens, every pair full length."""
  rng = np.random.default_rng(seed)
  shapes = memory.abstract_batch(config, rows)
  batch = {name: np.zeros(s.shape, s.dtype) for name, s in shapes.items()}
  batch["input_ids"] = rng.integers(5, config.model.vocab_size, shapes["input_ids"].shape,
                                    dtype=np.int32)
  batch["attention_mask"][:] = 1
  batch["labels"] = rng.integers(0, 2, rows, dtype=np.int32)
  batch["weights"][:] = 1.0
  return batch


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", required=True, choices=list(MODELS))
  parser.add_argument("--remat", action="store_true")
  parser.add_argument("--steps", type=int, default=5, help="timed steps after the first")
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--json", type=Path)
  args = parser.parse_args()
  config = configuration(args.model, args.remat, args.smoke)
  tc = config.train
  tx = make_optimizer(tc, args.steps + 1)
  graphdef, abstract_state = memory.abstract_train_state(config.model, tx)
  runner = parallel.DataParallel("none", graphdef, tx, steps.PairLoss())
  batch = random_batch(config, tc.batch_size)
  start = time.time()
  need = memory.step_need(config, runner, abstract_state, batch)
  record = {"model": args.model, "parameters": memory.parameter_count(config.model),
            "dtype": config.model.dtype, "remat": args.remat, "batch": tc.batch_size,
            "max_length": config.model.max_length, "needed_gib": need.bytes_per_device / memory.GIB,
            "available_gib": need.available and need.available / memory.GIB,
            "fits": need.fits, "compile_s": time.time() - start,
            "device": jax.devices()[0].device_kind}
  if need.fits:
    state = steps.TrainState.create(nnx.state(PairClassifier(config.model, rngs=nnx.Rngs(0))), tx)
    state, metrics = runner.train_step(state, batch, jax.random.key(0))
    jax.block_until_ready(metrics)
    start = time.time()
    for _ in range(args.steps):
      state, metrics = runner.train_step(state, batch, jax.random.key(0))
    jax.block_until_ready(metrics)
    seconds = (time.time() - start) / args.steps
    record |= {"s_per_step": seconds, "examples_per_s": tc.batch_size / seconds,
               "device_peak_gib": memory.device_peak_gib(),
               "loss": float(metrics["loss_sum"] / metrics["count"])}
  print(json.dumps(record))
  if args.json:
    args.json.write_text(json.dumps(record) + "\n")
  return 0 if need.fits else EXIT_DOES_NOT_FIT


if __name__ == "__main__":
  sys.exit(main())
