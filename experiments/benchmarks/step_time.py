"""How long does one jitted train step of a preset take on this machine?

Command: PYTHONPATH=. python experiments/benchmarks/step_time.py --preset seed
         PYTHONPATH=. python experiments/benchmarks/step_time.py --preset finetune \
             --pretrained PATH --torch
Machine: any JAX backend; prints compile time, milliseconds per step and
         training examples per second on random token batches of the preset's
         batch size and max_length (about a minute on a 2-core CPU). With
         --pretrained the model has the checkpoint's shape; --torch also times
         Hugging Face's PyTorch BertForSequenceClassification of that checkpoint
         (eager, AdamW, same batch) in the same run.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import numpy as np
from flax import nnx

from flax_mrpc import pretrained, steps
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
  parser.add_argument("--pretrained", help="time a model of this BERT checkpoint's shape")
  parser.add_argument("--torch", action="store_true",
                      help="also time transformers' PyTorch model of --pretrained")
  args = parser.parse_args()
  config = get_preset(args.preset)
  if args.pretrained:
    config = pretrained.configure(config.replace(pretrained=args.pretrained))
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
        f"{tc.batch_size / per_step:,.1f} examples/s")
  if args.torch:
    per_step = torch_step_time(args.pretrained, batch, args.steps)
    print(f"PyTorch BertForSequenceClassification, eager: {per_step * 1e3:.1f} ms per step; "
          f"{tc.batch_size / per_step:,.1f} examples/s")


def torch_step_time(checkpoint: str, batch: dict[str, np.ndarray], num_steps: int) -> float:
  """Seconds per AdamW step of transformers' PyTorch model on the same batch."""
  import torch
  from transformers import BertForSequenceClassification

  model = BertForSequenceClassification.from_pretrained(checkpoint, num_labels=1)
  optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
  inputs = {k: torch.tensor(batch[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
  labels = torch.tensor(batch["labels"], dtype=torch.float32)[:, None]

  def step():
    logits = model(**inputs).logits
    torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
    optimizer.step()
    optimizer.zero_grad()

  step()
  start = time.perf_counter()
  for _ in range(num_steps):
    step()
  return (time.perf_counter() - start) / num_steps


if __name__ == "__main__":
  main()
