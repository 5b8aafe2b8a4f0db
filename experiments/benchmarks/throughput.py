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
PyTorch models do: the framework-against-framework comparison.
--attention einsum cudnn adds a row with `jax.nn.dot_product_attention`
(cuDNN's fused kernel; xla or auto likewise), all rows then without attention
dropout, PyTorch's too; a kernel that refuses the shape gives a row with its
error. --packed adds a row of packed rows (random pairs of 20 to 90 tokens,
the last --attention), its examples/s counting pairs. MFU counts the matmul
FLOPs each row's model computes (flops_per_row), per second, against
--peak-tflops when given.

Measured on the 2-core CPU (AMD EPYC, jax 0.10.2), two runs of
`--models seed --batch-sizes 32 --torch --all-positions --steps 20`
(training examples / s, run 1 and run 2; compile time):

  flax_mrpc, jit on one device                          130.4, 118.2   6.3 s
  the same, last layer on every position                 50.1,  44.4   7.5 s
  PyTorch eager, seed port (every position)              46.0,  36.2   -

flax_mrpc trains the seed's model 2.8-3.3x faster than the PyTorch port;
most of that comes from running the last layer on one row. Doing the same
work (every position), XLA is 1.09-1.23x PyTorch eager on this CPU. Not yet
run on a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from flax_mrpc.config import ModelConfig, TrainConfig
from flax_mrpc.data import packing
from flax_mrpc.modules import PairClassifier
from flax_mrpc.training import steps
from flax_mrpc.training.optimizer import make_optimizer
from flax_mrpc.training.parallel import DataParallel

MODELS = {
    "seed": ModelConfig(seed_embedding=True, mask_attention=False),
    "bert-base": ModelConfig(vocab_size=30522, max_length=128, max_positions=512, d_model=768,
                             num_heads=12, d_ff=3072, num_layers=12, activation="gelu",
                             pooler=True),
}
TRAIN = TrainConfig(learning_rate=1e-4, schedule="constant", warmup_fraction=0.0)
# Dense bf16 peak TFLOP/s by device kind, from NVIDIA's H100 and H200 Tensor
# Core GPU datasheets (their larger figures count 2:4 sparsity). The H200 and
# the H100 SXM share the H100's compute; the PCIe H100 runs at lower clocks.
PEAK_BF16_TFLOPS = {"NVIDIA H200": 989.4, "NVIDIA H100 80GB HBM3": 989.4,
                    "NVIDIA H100 PCIe": 756.5}
TINY_SHAPE = dict(vocab_size=500, max_length=16, max_positions=16, d_model=32, num_heads=2,
                  d_ff=64, num_layers=2)


class AllPositionsClassifier(PairClassifier):
  """PairClassifier whose last layer runs on every position, then keeps the first."""

  def pooled(self, input_ids, token_type_ids, attention_mask, match_ids=None, *,
             positions=None, first_positions=None, rngs=None):
    """One pair per row: `first_positions` must be None."""
    assert first_positions is None, "the all-positions row takes unpacked batches"
    first = self.encoder(input_ids, token_type_ids, attention_mask, match_ids,
                         positions=positions, rngs=rngs)[:, 0]
    return self.pool(first, rngs)


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


def packed_batch(config: ModelConfig, rows: int) -> dict[str, np.ndarray]:
  """`rows` packed rows of `config.max_length` tokens, of random pairs of 20
  to 90 tokens (MRPC's pairs average 53 with all-MiniLM-L6-v2's tokenizer)."""
  rng = np.random.default_rng(0)
  n, seq = 4 * rows, config.max_length
  lengths = np.minimum(rng.integers(20, 91, n), seq)
  real = np.arange(seq)[None, :] < lengths[:, None]
  features = {
      "input_ids": (rng.integers(5, config.vocab_size, (n, seq)) * real).astype(np.int32),
      "token_type_ids": ((np.arange(seq)[None, :] >= lengths[:, None] // 2) & real).astype(
          np.int32),
      "attention_mask": real.astype(np.int32), "match_ids": np.zeros((n, seq), np.int32),
      "labels": rng.integers(0, 2, n).astype(np.int32)}
  packed_rows = packing.pack_rows(lengths, np.arange(n), seq)[:rows]
  return next(packing.packed_batches(features, packed_rows, rows))


def flops_per_row(config: ModelConfig, query_rows: int) -> float:
  """Training FLOPs of one row of `config.max_length` tokens that the model
  computes: 6 x matmul parameters x tokens, plus the two attention matmuls
  (forward 4 x queries x seq x width per layer, x3 for training). The last
  layer projects keys and values for every token and the rest for
  `query_rows` of them: 1 (the first token), the row's pairs (packed), or
  every token (as the PyTorch models do)."""
  d, seq, layers = config.d_model, config.max_length, config.num_layers
  per_token = 4 * d ** 2 + 2 * d * config.d_ff
  full_layer = 6 * per_token * seq + 12 * seq * seq * d
  last_layer = (6 * (2 * d ** 2 * seq + (per_token - 2 * d ** 2) * query_rows)
                + 12 * seq * d * query_rows)
  return (layers - 1) * full_layer + last_layer


def time_flax(config: ModelConfig, mode: str, batch: dict[str, np.ndarray], num_steps: int,
              model_class: type[PairClassifier] = PairClassifier):
  """(compile seconds, seconds per step) of the train step on `batch` under `mode`."""
  graphdef, params = nnx.split(model_class(config, rngs=nnx.Rngs(0)))
  tx = make_optimizer(TRAIN, 1000)
  runner = DataParallel(mode, graphdef, tx, steps.PairLoss())
  state = runner.put_state(steps.TrainState.create(params, tx))
  rng = jax.random.key(0)
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
        attention_probs_dropout_prob=config.attention_dropout, num_labels=1))
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


def measure(name: str, dtype: str, batch_size: int, modes: list[str], num_steps: int,
            all_positions: bool, torch: bool, peak_tflops: float | None,
            config: ModelConfig | None = None, attention: tuple[str, ...] = ("einsum",),
            packed: bool = False) -> list[dict]:
  """The rows of one (model, dtype, batch): flax_mrpc per mode, then one per
  further `attention` implementation, the packed row, the all-positions row
  and the PyTorch baseline when asked, in that order. Each is a record
  {model, dtype, batch, run, examples_per_s, compile_s, mfu, attention_dropout,
  device_kind, error}; mfu is None without `peak_tflops`, error is None
  unless the row's attention implementation refused to run. `config`
  replaces the model's shape (smoke runs). With an implementation other than
  einsum, no row drops out attention weights (the fused kernels cannot), so
  that every row does the same work."""
  config = dataclasses.replace(config or MODELS[name], dtype=dtype)
  if set(attention) != {"einsum"}:
    config = dataclasses.replace(config, attention_dropout=0.0)
  with_attention = {impl: dataclasses.replace(config, attention_implementation=impl)
                    for impl in attention}
  full = random_batch(config, batch_size)
  seq = config.max_length
  runs = [(f"flax_mrpc {mode}", with_attention[attention[0]], mode, full, batch_size, 1,
           PairClassifier) for mode in modes]
  runs += [(f"flax_mrpc {modes[0]}, {impl} attention", with_attention[impl], modes[0], full,
            batch_size, 1, PairClassifier) for impl in attention[1:]]
  if packed:
    batch = packed_batch(config, batch_size)
    pairs = int(batch["weights"].sum())
    runs.append((f"flax_mrpc {modes[0]}, packed, {attention[-1]} attention",
                 with_attention[attention[-1]], modes[0], batch, pairs, packing.PAIRS_PER_ROW,
                 PairClassifier))
  if all_positions:
    runs.append((f"flax_mrpc {modes[0]}, all positions", with_attention[attention[0]], modes[0],
                 full, batch_size, seq, AllPositionsClassifier))

  def record(run: str, compile_s: float | None, per_step: float | None, pairs: int,
             query_rows: int, error: str | None = None) -> dict:
    mfu = (batch_size / per_step * flops_per_row(config, query_rows) / (peak_tflops * 1e12)
           if peak_tflops and per_step else None)
    return {"model": name, "dtype": dtype, "batch": batch_size, "run": run,
            "examples_per_s": pairs / per_step if per_step else 0.0, "compile_s": compile_s,
            "mfu": mfu, "attention_dropout": config.attention_dropout,
            "device_kind": jax.devices()[0].device_kind, "error": error}

  records = []
  for run, row_config, mode, batch, pairs, query_rows, model_class in runs:
    try:
      records.append(record(run, *time_flax(row_config, mode, batch, num_steps, model_class),
                            pairs, query_rows))
    except (ValueError, NotImplementedError, RuntimeError) as error:  # e.g. cuDNN refusing
      records.append(record(run, None, None, pairs, query_rows,
                            f"{type(error).__name__}: {error}"[:400]))
  if torch:
    records.append(record("torch eager", None,
                          time_torch(name, config, dtype, batch_size, num_steps), batch_size, seq))
  return records


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
  parser.add_argument("--peak-tflops", help="the device's peak TFLOP/s, for MFU; 'card': "
                                             "the dense bf16 peak of a card in PEAK_BF16_TFLOPS")
  parser.add_argument("--json", type=Path, metavar="FILE",
                      help="also write the records to FILE (a JSON list)")
  parser.add_argument("--attention", nargs="+", default=["einsum"],
                      choices=["einsum", "xla", "cudnn", "auto"],
                      help="attention implementations: the first for every row, each further "
                           "one a row of its own (any but einsum: no attention dropout anywhere)")
  parser.add_argument("--packed", action="store_true",
                      help="also time packed rows of random MRPC-length pairs (the last "
                           "--attention); examples/s counts pairs")
  parser.add_argument("--tiny", action="store_true",
                      help="smoke run: every model at a tiny shape (2 layers x 32, seq 16)")
  args = parser.parse_args()
  kind = jax.devices()[0].device_kind
  peak = PEAK_BF16_TFLOPS.get(kind) if args.peak_tflops == "card" else (
      args.peak_tflops and float(args.peak_tflops))
  print(f"{jax.device_count()} x {kind}, jax {jax.__version__}; MFU against "
        f"{f'{peak} TFLOP/s' if peak else 'no peak (none given or known)'}")
  print(f"{'model':9} {'dtype':8} {'batch':>5} {'run':34} {'ex/s':>9} {'compile s':>9} {'MFU':>6}")
  records = []
  for name in args.models:
    shape = dataclasses.replace(MODELS[name], **TINY_SHAPE) if args.tiny else None
    for dtype in args.dtypes:
      for batch_size in args.batch_sizes:
        for r in measure(name, dtype, batch_size, args.modes, args.steps, args.all_positions,
                         args.torch, peak, shape, tuple(args.attention), args.packed):
          records.append(r)
          mfu = "" if r["mfu"] is None else f"{r['mfu']:6.1%}"
          compiled = "" if r["compile_s"] is None else f"{r['compile_s']:9.1f}"
          print(f"{name:9} {dtype:8} {batch_size:5} {r['run']:34} {r['examples_per_s']:9.1f} "
                f"{compiled:>9} {mfu:>6} {r['error'] or ''}", flush=True)
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
  main()
