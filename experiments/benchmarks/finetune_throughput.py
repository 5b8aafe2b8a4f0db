"""How many MRPC training examples per second does fine-tuning reach here,
against Hugging Face's PyTorch model on the same batches?

Command: PYTHONPATH=. python experiments/benchmarks/finetune_throughput.py \
             --pretrained PATH [--steps 30] [--repeats 3] [--torch]
Machine: any JAX backend; about 12 minutes on a 2-core CPU for all-MiniLM-L6-v2.
         Batches come from the real MRPC train split (first epoch's order),
         `--steps` of them spread evenly over the epoch, timed after every
         batch shape has compiled (compile s: shapes new to that row). The
         rows are timed in turn `--repeats` times, so that a slow spell of
         the machine hits them alike; s/step is the median. mean seq: tokens
         per row as run; real: tokens per pair without padding. Rows:
           preset        the finetune preset: length-grouped batches, each cut
                         to its longest pair rounded up to pad_multiple;
           random order  the same padding with plain shuffled batches, which
                         is how Hugging Face's Trainer batches by default
                         (DataCollatorWithPadding: pad to the longest pair);
           PyTorch       (--torch) transformers' BertForSequenceClassification,
                         eager (on the GPU when torch sees one), in training
                         mode (dropout on), AdamW, on the
                         random-order batches padded to their longest pair, as
                         the Trainer does.

Measured on the 2-core CPU with nothing else running, all-MiniLM-L6-v2,
`--pretrained $MINILM --torch` (30 steps, median of 3 repeats):

  row                    tokens/row (real)  s/step  examples/s  compile
  preset                       61.9 (53.8)    2.00        16.0     77 s
  random order                 86.4 (53.7)    2.99        10.7     24 s
  PyTorch, training mode       78.6 (53.7)    2.52        12.7     -

That is 1.26x PyTorch (1.24x in another run). Per token of row length the
two cost about the same: 2.99 / 86.4 = 0.035 s with XLA against
2.52 / 78.6 = 0.032 with PyTorch on the shuffled batches. The lead comes from
padding less and from the one-row last layer; even with no padding at all,
at PyTorch's cost per token, a step would be 78.6 / 53.7 = 1.46x PyTorch's.

The compiles (one per batch length) persist across runs with
JAX_COMPILATION_CACHE_DIR=DIR: a second `--repeats 1` run without --torch
spent 26.2 s on the preset's first step of each shape instead of 84.8 s.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flax_mrpc import batching, data, pretrained, steps, tokenization
from flax_mrpc.config import get_preset
from flax_mrpc.modules import PairClassifier
from flax_mrpc.optim import make_optimizer


def spread(items: list, count: int) -> list:
  """`count` items evenly spaced over `items`."""
  return [items[i] for i in np.linspace(0, len(items) - 1, min(count, len(items))).astype(int)]


def real_tokens(batch_list) -> float:
  """Mean real (unpadded) tokens per pair over the batches' real rows."""
  return float(np.mean(np.concatenate(
      [b["attention_mask"][b["weights"] > 0].sum(axis=1) for b in batch_list])))


def jax_timer(config):
  """A function timing the train step of the `--pretrained` model on a list
  of batches: (seconds compiling the batch shapes not seen before, seconds
  per step). Each call starts from the pretrained weights."""
  mc, tc = config.model, config.train
  model = PairClassifier(mc, rngs=nnx.Rngs(0))
  pretrained.load_into(model, mc, Path(tc.pretrained))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(tc, 1000)
  step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx,
                                   pos_weight=tc.pos_weight), donate_argnums=0)
  rng = jax.random.key(0)

  def time_steps(batch_list) -> tuple[float, float]:
    state = steps.TrainState.create(jax.tree.map(jnp.copy, params), tx)
    start = time.perf_counter()
    for batch in {b["input_ids"].shape: b for b in batch_list}.values():
      state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for batch in batch_list:
      state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics)
    return compile_s, (time.perf_counter() - start) / len(batch_list)

  return time_steps


def torch_timer(checkpoint: str):
  """A function timing an AdamW step of transformers' PyTorch model in
  training mode (dropout on, as the Trainer runs it) on a list of batches,
  each cut to its longest pair: (None: nothing compiles, seconds per step)."""
  import torch
  from transformers import BertForSequenceClassification

  device = "cuda" if torch.cuda.is_available() else "cpu"
  model = BertForSequenceClassification.from_pretrained(checkpoint, num_labels=1).to(device)
  model.train()  # from_pretrained returns it in eval mode: no dropout
  optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)

  def step(batch):
    seq = int(batch["attention_mask"].sum(axis=1).max())
    inputs = {k: torch.tensor(batch[k][:, :seq]).to(device)
              for k in ("input_ids", "token_type_ids", "attention_mask")}
    logits = model(**inputs).logits
    labels = torch.tensor(batch["labels"], dtype=torch.float32)[:, None].to(device)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
    optimizer.step()
    optimizer.zero_grad()

  def synchronize():
    if device == "cuda":
      torch.cuda.synchronize()

  def time_steps(batch_list) -> tuple[None, float]:
    step(batch_list[0])
    synchronize()
    start = time.perf_counter()
    for batch in batch_list:
      step(batch)
    synchronize()
    return None, (time.perf_counter() - start) / len(batch_list)

  return time_steps


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pretrained", required=True, help="a BERT checkpoint folder")
  parser.add_argument("--data-dir", help="MRPC folder (default: $FLAX_MRPC_DATA_DIR)")
  parser.add_argument("--max-length", type=int, default=128)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--torch", action="store_true", help="also time PyTorch")
  parser.add_argument("--json", type=Path, metavar="FILE",
                      help="also write the rows to FILE (a JSON list)")
  parser.add_argument("--repeats", type=int, default=3,
                      help="time the rows in turn this many times; s/step is the median")
  args = parser.parse_args()
  if min(args.steps, args.repeats) < 1:
    parser.error("--steps and --repeats must be at least 1")
  config = pretrained.configure(get_preset("finetune").replace(
      pretrained=args.pretrained, max_length=args.max_length))
  tc = config.train
  tokenizer = tokenization.load_tokenizer(args.pretrained)
  train = data.load_splits(data.find_data_dir(args.data_dir))["train"]
  features = tokenization.encode_pairs(tokenizer, train, config.model.max_length).features()
  lengths = features["attention_mask"].sum(axis=1)
  grouped = batching.length_grouped_order(lengths, tc.batch_size, tc.seed, 1)
  shuffled = batching.epoch_order(len(lengths), tc.seed, 1)
  time_jax = jax_timer(config)
  rows = {}  # name -> (batches, timer, mean tokens per row as run)
  for name, order in (("preset", grouped), ("random order", shuffled)):
    batch_list = spread(list(batching.batches(features, tc.batch_size, order, tc.pad_multiple)),
                        args.steps)
    rows[f"flax_mrpc, {name}"] = (batch_list, time_jax,
                                  np.mean([b["input_ids"].shape[1] for b in batch_list]))
  if args.torch:
    batch_list = spread(list(batching.batches(features, tc.batch_size, shuffled)), args.steps)
    rows["PyTorch, random order"] = (
        batch_list, torch_timer(args.pretrained),
        np.mean([b["attention_mask"].sum(axis=1).max() for b in batch_list]))
  compile_s, per_step = {}, {name: [] for name in rows}
  for _ in range(args.repeats):
    for name, (batch_list, time_steps, _) in rows.items():
      compiled, seconds = time_steps(batch_list)
      compile_s.setdefault(name, compiled)
      per_step[name].append(seconds)
  print(f"{config.model.num_layers} layers x {config.model.d_model}, batch {tc.batch_size}, "
        f"{len(batch_list)} steps on {jax.devices()[0].device_kind} "
        f"(pad_multiple {tc.pad_multiple}), median of {args.repeats} repeats")
  print(f"{'':28} {'mean seq':>8} {'real':>5} {'s/step':>7} {'ex/s':>6} {'compile s':>9}"
        "  each repeat")
  records = []
  for name, (batch_list, _, mean_seq) in rows.items():
    median = float(np.median(per_step[name]))
    compiled = "" if compile_s[name] is None else f"{compile_s[name]:9.1f}"
    print(f"{name:28} {mean_seq:8.1f} {real_tokens(batch_list):5.1f} {median:7.2f} "
          f"{tc.batch_size / median:6.1f} {compiled:>9}  "
          + " ".join(f"{t:.2f}" for t in per_step[name]))
    records.append({"run": name, "tokens_per_row": float(mean_seq),
                    "real_tokens_per_pair": real_tokens(batch_list), "s_per_step": median,
                    "examples_per_s": tc.batch_size / median, "compile_s": compile_s[name],
                    "each_repeat_s": per_step[name],
                    "model": f"{config.model.num_layers} layers x {config.model.d_model}",
                    "device_kind": jax.devices()[0].device_kind})
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
  main()
