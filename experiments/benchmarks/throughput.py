"""Training throughput of the train step, each parallel mode, against the
PyTorch models a user would otherwise run.

Command: PYTHONPATH=. python experiments/benchmarks/throughput.py \
             --models seed --batch-sizes 32 --dtypes float32 --torch
         (on a GPU: --models seed bert-base --batch-sizes 32 256 512
          --dtypes float32 bfloat16 --modes none sharding pmap --torch)
Machine: any; about 2 minutes for the CPU command on a 2-core CPU.
Models:  seed       the seed's shape: 1 layer, 512 wide, 8 heads, seq 64,
                    the seed's embedding and unmasked attention;
                    baseline: its faithful PyTorch port (seed_torch.py),
                    eager, AdamW.
         bert-base  12 layers, 768 wide, 12 heads, seq 128, GELU, pooler;
                    baseline: transformers' BertForSequenceClassification
                    (random weights), eager, AdamW, bf16 autocast for bfloat16.
Random token batches of full length; each row is the mean of --steps timed
steps after two warm-up steps (compile time reported separately).
PairClassifier runs its last layer on the [CLS] row alone (the logit needs no
other); --all-positions adds a row that runs it on every position, as the
PyTorch models do: the framework-against-framework comparison. MFU counts
the matmul FLOPs each row's model computes (flops_per_example), per second,
against --peak-tflops when given.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flax_mrpc import steps
from flax_mrpc.config import ModelConfig, TrainConfig
from flax_mrpc.modules import PairClassifier
from flax_mrpc.optim import make_optimizer
from flax_mrpc.parallel import DataParallel

MODELS = {
    "seed": ModelConfig(seed_embedding=True, mask_attention=False),
    "bert-base": ModelConfig(vocab_size=30522, max_length=128, max_positions=512, d_model=768,
                             num_heads=12, d_ff=3072, num_layers=12, activation="gelu",
                             pooler=True),
}
TRAIN = TrainConfig(learning_rate=1e-4, schedule="constant", warmup_fraction=0.0)


class AllPositionsClassifier(PairClassifier):
  """PairClassifier whose last layer runs on every position, then keeps the first."""

  def pooled(self, input_ids, token_type_ids, attention_mask, match_ids=None, *, rngs=None):
    first = self.encoder(input_ids, token_type_ids, attention_mask, match_ids, rngs=rngs)[:, 0]
    return jnp.tanh(self.pooler(first)) if self.pooler is not None else first


def random_batch(config: ModelConfig, batch_size: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  shape = (batch_size, config.max_length)
  half = config.max_length // 2
  return {
      "input_ids": rng.integers(5, config.vocab_size, shape).astype(np.int32),
      "token_type_ids": np.repeat([[0] * half + [1] * (config.max_length - half)],
                                  batch_size, axis=0).astype(np.int32),
      "attention_mask": np.ones(shape, np.int32),
      "labels": rng.integers(0, 2, batch_size).astype(np.int32),
      "weights": np.ones(batch_size, np.float32),
  }


def flops_per_example(config: ModelConfig, all_positions: bool) -> float:
  """Training FLOPs of one example that the row's model computes: 6 x matmul
  parameters x tokens, plus the two attention matmuls (forward 4 x queries x
  seq x width per layer, x3 for training). Without `all_positions` the last
  layer projects keys and values for every token and the rest for one."""
  d, seq, layers = config.d_model, config.max_length, config.num_layers
  per_token = 4 * d ** 2 + 2 * d * config.d_ff
  full_layer = 6 * per_token * seq + 12 * seq * seq * d
  if all_positions:
    return layers * full_layer
  last_layer = 6 * (2 * d ** 2 * seq + (per_token - 2 * d ** 2)) + 12 * seq * d
  return (layers - 1) * full_layer + last_layer


def time_flax(config: ModelConfig, mode: str, batch_size: int, num_steps: int,
              model_class: type[PairClassifier] = PairClassifier):
  """(compile seconds, seconds per step) of the train step under `mode`."""
  graphdef, params = nnx.split(model_class(config, rngs=nnx.Rngs(0)))
  tx = make_optimizer(TRAIN, 1000)
  runner = DataParallel(mode, graphdef, tx, pos_weight=None)
  state = runner.put_state(steps.TrainState.create(params, tx))
  batch, rng = random_batch(config, batch_size), jax.random.key(0)
  start = time.perf_counter()
  state, metrics = runner.train_step(state, batch, rng)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  state, metrics = runner.train_step(state, batch, rng)  # state now in its steady layout
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(num_steps):
    state, metrics = runner.train_step(state, batch, rng)
  jax.block_until_ready(metrics)
  return compile_s, (time.perf_counter() - start) / num_steps


def time_torch(name: str, config: ModelConfig, dtype: str, batch_size: int, num_steps: int):
  """Seconds per eager AdamW step of the PyTorch baseline of `name`."""
  import torch

  device = "cuda" if torch.cuda.is_available() else "cpu"
  if name == "seed":
    sys.path.insert(0, str(Path(__file__).parent))
    import seed_torch

    model = seed_torch.SeedClassifier(config)
  else:
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        intermediate_size=config.d_ff, max_position_embeddings=config.num_positions,
        num_labels=1))
  model = model.to(device).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
  batch = {k: torch.tensor(v).to(device) for k, v in random_batch(config, batch_size).items()}
  inputs = [batch["input_ids"].long(), batch["token_type_ids"].long(),
            batch["attention_mask"].long()]
  labels = batch["labels"].float()

  def step():
    with torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
      logits = model(*inputs) if name == "seed" else model(
          input_ids=inputs[0], token_type_ids=inputs[1], attention_mask=inputs[2]).logits[:, 0]
      loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()

  step()
  if device == "cuda":
    torch.cuda.synchronize()
  start = time.perf_counter()
  for _ in range(num_steps):
    step()
  if device == "cuda":
    torch.cuda.synchronize()
  return (time.perf_counter() - start) / num_steps


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="+", default=["seed"], choices=sorted(MODELS))
  parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32])
  parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
  parser.add_argument("--modes", nargs="+", default=["none"], choices=["none", "sharding", "pmap"])
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--torch", action="store_true", help="also time the PyTorch baselines")
  parser.add_argument("--all-positions", action="store_true",
                      help="also time the first mode with the last layer on every position")
  parser.add_argument("--peak-tflops", type=float, help="the device's peak, for MFU")
  args = parser.parse_args()
  print(f"{jax.device_count()} x {jax.devices()[0].device_kind}, jax {jax.__version__}")
  print(f"{'model':9} {'dtype':8} {'batch':>5} {'run':34} {'ex/s':>9} {'compile s':>9} {'MFU':>6}")
  for name in args.models:
    for dtype in args.dtypes:
      config = dataclasses.replace(MODELS[name], dtype=dtype)
      for batch_size in args.batch_sizes:
        rows = []
        for mode in args.modes:
          compile_s, per_step = time_flax(config, mode, batch_size, args.steps)
          rows.append((f"flax_mrpc {mode}", per_step, compile_s, False))
        if args.all_positions:
          compile_s, per_step = time_flax(config, args.modes[0], batch_size, args.steps,
                                          AllPositionsClassifier)
          rows.append((f"flax_mrpc {args.modes[0]}, all positions", per_step, compile_s, True))
        if args.torch:
          rows.append(("PyTorch eager", time_torch(name, config, dtype, batch_size, args.steps),
                       None, True))
        for run, per_step, compile_s, all_positions in rows:
          rate = batch_size / per_step
          mfu = "" if not args.peak_tflops else \
              f"{rate * flops_per_example(config, all_positions) / (args.peak_tflops * 1e12):6.1%}"
          compiled = "" if compile_s is None else f"{compile_s:9.1f}"
          print(f"{name:9} {dtype:8} {batch_size:5} {run:34} {rate:9.1f} {compiled:>9} {mfu:>6}")


if __name__ == "__main__":
  main()
