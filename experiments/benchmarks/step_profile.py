"""Where does one train step spend its time on this backend?

Command: PYTHONPATH=. python experiments/benchmarks/step_profile.py \
             [--model seed | --pretrained PATH [--max-length 64]] [--batch-size 32] \
             [--steps 5] [--pack] [--partitionable-bits]
Machine: any XLA:CPU; about a minute on a 2-core CPU. It traces `--steps`
train steps (after two warm-ups) with XLA:CPU's per-op trace events, maps each
op to the compiled HLO, and sums its time (over all threads) by the step's
phase (forward, backward, optimizer) and by kind: matmuls, ops as large as the
word-embedding table, random bits (dropout masks), and the rest. `--pack`
makes the batch `--batch-size` packed rows of random pairs of 20 to 90
tokens; `--partitionable-bits` draws the dropout masks with threefry's
partitionable layout, as GPUs, TPUs and meshes do (the training default on
XLA:CPU is the other, see `steps.partitionable_bits_by_default`).

Measured once on the 2-core CPU with a study training beside it, the seed
model at batch 32 (ms per step, summed over both threads):

  kind                                   forward  backward  optimizer+rest  total
  matmul                                   101.0     113.6             0.0  214.6
  as large as the 40000 x 512 embedding      0.0      67.1            98.9  166.0
  random bits (dropout masks)               81.4       0.0             0.0   81.4
  other                                     25.1      62.2            57.3  144.7

With the one-row last layer most of the step is no longer matmuls: the
largest other costs are zeroing and scattering the embedding gradient,
AdamW's passes over the embedding table, and the dropout masks.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from flax_mrpc.hf.load import load_pretrained  # noqa: E402
from flax_mrpc.modules import PairClassifier  # noqa: E402
from flax_mrpc.training import steps
from flax_mrpc.training.optimizer import make_optimizer  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from throughput import MODELS, TRAIN, packed_batch, random_batch  # noqa: E402


def op_kinds(hlo_text: str, vocab_size: int) -> dict[str, tuple[str, str]]:
  """HLO instruction name -> (phase, kind), from the optimized HLO's metadata."""
  kinds = {}
  for line in hlo_text.splitlines():
    match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) .*op_name=\"([^\"]*)\"", line)
    if not match:
      continue
    name, shape, op_name = match.groups()
    phase = ("backward" if "transpose(jvp" in op_name else
             "forward" if "jvp(" in op_name else "optimizer and rest")
    if "dot" in line.split(" = ", 1)[1].split("(")[0] or "dot_general" in op_name:
      kind = "matmul"
    elif any(word in op_name for word in ("random_bits", "threefry", "bernoulli")):
      kind = "random bits"
    elif f"[{vocab_size}," in shape:
      kind = "embedding-table sized"
    else:
      kind = "other"
    kinds[name] = (phase, kind)
  return kinds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  source = parser.add_mutually_exclusive_group()
  source.add_argument("--model", default="seed", choices=sorted(MODELS))
  source.add_argument("--pretrained", help="a BERT checkpoint folder")
  parser.add_argument("--max-length", type=int, default=64,
                      help="tokens per row, for --pretrained (default: %(default)s)")
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--pack", action="store_true", help="packed rows of random pairs")
  parser.add_argument("--partitionable-bits", action="store_true",
                      help="dropout bits in threefry's partitionable layout")
  args = parser.parse_args()

  if args.pretrained:
    model, config, _ = load_pretrained(args.pretrained, max_length=args.max_length)
  else:
    config = MODELS[args.model]
    model = PairClassifier(config, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(TRAIN, 1000)
  state = steps.TrainState.create(params, tx)
  batch = (packed_batch if args.pack else random_batch)(config, args.batch_size)
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  rng = jax.random.key(0)
  partitionable = args.partitionable_bits or steps.partitionable_bits_by_default(sharded=False)
  step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx, loss=steps.PairLoss(),
                                   partitionable_bits=partitionable), donate_argnums=0)
  kinds = op_kinds(step.lower(state, batch, rng).compile().as_text(), config.vocab_size)
  for _ in range(2):
    state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics)

  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      start = time.perf_counter()
      for _ in range(args.steps):
        state, metrics = step(state, batch, rng)
      jax.block_until_ready(metrics)
      seconds = (time.perf_counter() - start) / args.steps
    trace = next(Path(trace_dir).rglob("*.xplane.pb"))
    profile = jax.profiler.ProfileData.from_file(str(trace))
    totals = collections.Counter()
    for plane in profile.planes:
      for line in plane.lines:
        for event in line.events:
          if event.name in kinds:
            totals[kinds[event.name]] += event.duration_ns / 1e6 / args.steps

  print(f"{jax.devices()[0].device_kind}, batch {list(batch['input_ids'].shape)}"
        f"{' packed' if args.pack else ''}, {seconds:.3f} s per step while traced; "
        "ms per step summed over threads")
  phases = ["forward", "backward", "optimizer and rest"]
  print(f"{'kind':22}" + "".join(f"{p:>20}" for p in phases) + f"{'total':>10}")
  for kind in ["matmul", "embedding-table sized", "random bits", "other"]:
    row = [totals[(p, kind)] for p in phases]
    print(f"{kind:22}" + "".join(f"{v:20.1f}" for v in row) + f"{sum(row):10.1f}")
  print(f"{'total':22}" + "".join(
      f"{sum(v for (p, _), v in totals.items() if p == phase):20.1f}" for phase in phases)
      + f"{sum(totals.values()):10.1f}")


if __name__ == "__main__":
  main()
