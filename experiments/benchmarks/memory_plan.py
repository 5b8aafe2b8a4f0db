"""How much memory per device does fine-tuning a large encoder need, and
which layout makes it fit a 16 GiB TPU v5e chip, a 24 GiB GPU or an 80 GiB H100?

Command: PYTHONPATH=. python experiments/benchmarks/memory_plan.py \
             [--models bert-base deberta-v3-large ...] [--devices 1 8] \
             [--remat off on] [--accumulate 1 4] [--json FILE]
Machine: any CPU; it runs with 8 fake CPU devices
         (--xla_force_host_platform_device_count=8) and allocates no
         weights. On a 2-core CPU the 60 compilations take about an hour.

Each model's config is built from the shapes of its published `config.json`
(`large_models.MODELS`, translated by `flax_mrpc.hf.load.model_config`), in float32 with
AdamW, fine-tuned at 512 tokens on 32 pairs per optimizer step. For every
layout, 1 device (one jit) and 8 devices (replicated `sharding` and `fsdp`),
each with remat off and on and 1 or 4 accumulated micro-batches, the train
step is compiled on abstract shapes and `training.memory.need` reads XLA's
`memory_analysis()`: the GiB one device needs (arguments, unaliased outputs,
temporaries). The figures are XLA:CPU's buffer assignment, with the one
pass that undoes remat on the CPU turned off (see XLA_FLAGS below); GPU and
TPU compilers fuse and schedule differently, so treat them as estimates.

Writes a markdown table to stdout and, with --json, the rows to FILE
(experiments/results/memory_plan.json); each row is written as soon as it
is measured, so a stopped run keeps what it had.
"""

from __future__ import annotations

import os

# 8 CPU devices; and XLA:CPU keeps jax.checkpoint's optimization barriers, as
# the GPU and TPU compilers do (by default it expands them and CSE merges
# the recomputation back into the forward pass, so remat saved nothing).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8"
                           + " --xla_disable_hlo_passes=cse_barrier_expander")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from flax_mrpc.training import memory  # noqa: E402
from large_models import BATCH_SIZE, MAX_LENGTH, MODELS, model_config  # noqa: E402

DEVICE_MEMORY_GIB = {"v5e 16": 16, "24": 24, "H100 80": 80}


def layouts(device_counts=(1, 8), remats=(False, True), accumulates=(1, 4)):
  """(devices, --parallel mode, remat, accumulate_steps) of every row."""
  for devices in device_counts:
    for mode in ("none",) if devices == 1 else ("sharding", "fsdp"):
      for remat in remats:
        for accumulate in accumulates:
          yield devices, mode, remat, accumulate


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
  parser.add_argument("--devices", nargs="+", type=int, default=[1, 8], choices=[1, 8])
  parser.add_argument("--remat", nargs="+", default=["off", "on"], choices=["off", "on"])
  parser.add_argument("--accumulate", nargs="+", type=int, default=[1, 4],
                      help="micro-batches per step of 32 pairs (default: 1 4)")
  parser.add_argument("--json", type=Path, help="write the rows here as they are measured")
  args = parser.parse_args()
  assert jax.device_count() == 8, "run with 8 CPU devices (set before jax starts)"
  machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
  rows = []
  print("| model | parameters | devices | parallel | remat | accumulate | GiB per device | "
        "fits 16 / 24 / 80 GiB |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
  for name in args.models:
    config = model_config(name)
    parameters = memory.parameter_count(config.model)
    for devices, mode, remat, accumulate in layouts(
        args.devices, [r == "on" for r in args.remat], args.accumulate):
      changed = config.replace(remat=remat, accumulate_steps=accumulate)
      start = time.time()
      need = memory.need(changed, mode)
      gib = need.bytes_per_device / memory.GIB
      row = {"model": name, "parameters": parameters, "devices": devices,
             "parallel": "replicated" if mode in ("none", "sharding") else "fsdp",
             "remat": remat, "accumulate_steps": accumulate, "gib_per_device": round(gib, 3),
             "source": need.source, "fits": {k: gib <= v for k, v in DEVICE_MEMORY_GIB.items()},
             "compile_s": round(time.time() - start, 1), "max_length": MAX_LENGTH,
             "batch_size": BATCH_SIZE, "machine": machine, "jax": jax.__version__}
      rows.append(row)
      fits = " / ".join("yes" if ok else "no" for ok in row["fits"].values())
      print(f"| {name} | {parameters / 1e6:,.0f}M | {devices} | {row['parallel']} | "
            f"{'on' if remat else 'off'} | {accumulate} | {gib:,.2f} | {fits} |", flush=True)
      if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
  main()
