"""How much memory per device does fine-tuning a large encoder need, and
which layout makes it fit a 16 GiB TPU v5e chip, a 24 GiB GPU or an 80 GiB H100?

Command: PYTHONPATH=. python experiments/benchmarks/memory_plan.py \
             [--models bert-base deberta-v3-large ...] [--json FILE]
Machine: any CPU; it runs with 8 fake CPU devices
         (--xla_force_host_platform_device_count=8) and allocates no
         weights. On a 2-core CPU the 60 compilations take about an hour.

Each model's config is built from the shapes of its published `config.json`
(`MODELS`, translated by `flax_mrpc.hf.load.model_config`), in float32 with
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
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from flax_mrpc.config import TaskConfig, get_preset, with_task  # noqa: E402
from flax_mrpc.hf import load  # noqa: E402
from flax_mrpc.training import memory  # noqa: E402

# The shapes of each model's published config.json (Hugging Face hub ids in
# the comments); only the fields the translation reads.
MODELS = {
    "bert-base": {  # google-bert/bert-base-uncased
        "model_type": "bert", "vocab_size": 30522, "hidden_size": 768,
        "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
        "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12},
    "deberta-v3-large": {  # microsoft/deberta-v3-large
        "model_type": "deberta-v2", "vocab_size": 128100, "hidden_size": 1024,
        "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
        "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 0,
        "layer_norm_eps": 1e-7, "relative_attention": True, "position_buckets": 256,
        "max_relative_positions": -1, "norm_rel_ebd": "layer_norm", "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"], "position_biased_input": False},
    "modernbert-large": {  # answerdotai/ModernBERT-large
        "model_type": "modernbert", "vocab_size": 50368, "hidden_size": 1024,
        "num_hidden_layers": 28, "num_attention_heads": 16, "intermediate_size": 2624,
        "hidden_activation": "gelu", "max_position_embeddings": 8192,
        "global_attn_every_n_layers": 3, "local_attention": 128, "global_rope_theta": 160000.0,
        "local_rope_theta": 10000.0, "norm_eps": 1e-5, "norm_bias": False, "mlp_bias": False,
        "attention_bias": False, "classifier_pooling": "mean"},
    "xlm-r-large": {  # FacebookAI/xlm-roberta-large
        "model_type": "xlm-roberta", "vocab_size": 250002, "hidden_size": 1024,
        "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
        "hidden_act": "gelu", "max_position_embeddings": 514, "type_vocab_size": 1,
        "layer_norm_eps": 1e-5, "pad_token_id": 1},
    "eurobert-2.1b": {  # EuroBERT/EuroBERT-2.1B
        "model_type": "eurobert", "vocab_size": 128256, "hidden_size": 2304,
        "num_hidden_layers": 32, "num_attention_heads": 18, "num_key_value_heads": 6,
        "intermediate_size": 6144, "hidden_act": "silu", "max_position_embeddings": 8192,
        "rope_theta": 250000.0, "rms_norm_eps": 1e-5, "mlp_bias": False,
        "attention_bias": False, "classifier_pooling": "late"},
}
MAX_LENGTH, BATCH_SIZE = 512, 32
DEVICE_MEMORY_GIB = {"v5e 16": 16, "24": 24, "H100 80": 80}


def model_config(name: str):
  """The fine-tuning Config of MODELS[name] at MAX_LENGTH tokens and BATCH_SIZE pairs."""
  with tempfile.TemporaryDirectory() as folder:
    (Path(folder) / "config.json").write_text(json.dumps(MODELS[name]))
    model = load.model_config(Path(folder), MAX_LENGTH)
  config = with_task(get_preset("finetune"), TaskConfig())
  model = dataclasses.replace(model, num_labels=config.model.num_labels)
  return dataclasses.replace(config, model=model).replace(batch_size=BATCH_SIZE)


def layouts():
  """(devices, --parallel mode, remat, accumulate_steps) of every row."""
  for devices, modes in ((1, ("none",)), (8, ("sharding", "fsdp"))):
    for mode in modes:
      for remat in (False, True):
        for accumulate in (1, 4):
          yield devices, mode, remat, accumulate


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
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
    for devices, mode, remat, accumulate in layouts():
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
