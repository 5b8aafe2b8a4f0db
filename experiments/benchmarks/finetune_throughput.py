"""How many MRPC training examples per second does fine-tuning reach here,
against Hugging Face's PyTorch model on the same batches?

Command: PYTHONPATH=. python experiments/benchmarks/finetune_throughput.py \
             --pretrained PATH [--as-modernbert] [--steps 30] [--repeats 3] [--torch] \
             [--json FILE]
Machine: any JAX backend; about 12 minutes on a 2-core CPU for all-MiniLM-L6-v2.
         Batches are the train loop's own (`epochs.TrainEpochs`, first epoch,
         real MRPC train split), `--steps` of them spread evenly over the
         epoch, timed after every batch shape has compiled (compile s and
         shapes: those the row's batches need). The rows are timed in turn
         `--repeats` times, so that a slow spell of the machine hits them
         alike; s/step is the median and examples/s is the mean number of
         pairs per step over it. tokens/row: the row length as run; real:
         real tokens per row; rows: rows per step. Rows:
           packed        rows of 128 tokens holding 32 pairs on average
                         (`packing`), one compiled shape;
           length-grouped, cut
                         batches of 32 pairs of similar length, each cut to
                         its longest pair rounded up to 16 (the preset before
                         packing);
           random order, cut
                         the same with plain shuffled batches, which is how
                         Hugging Face's Trainer batches by default
                         (DataCollatorWithPadding: pad to the longest pair);
           PyTorch       (--torch) the checkpoint's transformers
                         AutoModelForSequenceClassification, eager (on the
                         GPU when torch sees one), in training mode (dropout
                         on), AdamW, on the random-order batches padded to
                         their longest pair, as the Trainer does.
--as-modernbert times a ModernBERT of the checkpoint's width, depth, heads
and tokenizer with random weights instead (`random_modernbert`).

Measured on the 2-core CPU with nothing else running, all-MiniLM-L6-v2,
`--pretrained $MINILM --torch` (30 steps, median of 3 repeats; torch 2.13.0):

  row                               tokens/row  real  rows  s/step  ex/s  compile s  shapes
  packed (the finetune preset)           128.0 124.1  14.0    1.10  29.9        8.9       1
  length-grouped, cut                     61.9  53.5  32.0    1.13  28.1       38.4       5
  random order, cut                       86.4  53.8  32.0    1.64  19.3       12.4       3
  PyTorch, random order, cut              78.6  53.8  32.0    1.60  19.8          -       -

Packed steps train at 1.51x PyTorch's examples/s (the repeats: 1.09-1.12
s/step against 1.50-1.71), with one compiled shape where the cut batches need one per length (5 in
these 30 steps). Two changes got there from the length-grouped preset's
1.33x (25.8 against 19.4 examples/s in a run earlier the same day):
  - Packing: 1792 tokens per step, 97% of them real, against 32 x 61.9 = 1981
    in length-grouped batches. Before the next change the packed step took
    1.27 s and the length-grouped one 1.22 s: attention over 128 tokens costs
    more per token than over 62, so packing alone did not beat grouping.
  - Dropout masks in threefry's non-partitionable layout on XLA:CPU
    (`steps.partitionable_bits_by_default`), the same Bernoulli draws. In
    `step_profile.py --pretrained $MINILM --max-length 128 --batch-size 14
    --pack` (one traced run each, so noisy) the masks took 158 ms of the
    step against 197 with `--partitionable-bits`, and the step 1.27 s
    against 1.36; this benchmark's packed row went from 1.27 to 1.10 s/step
    between its run before the change and the one above.
What is left is mostly matmuls (`step_profile.py`): 762 of 1307 ms. Per token as run,
the packed step costs 1.10 / 1792 = 0.61 ms, the length-grouped one
1.13 / 1981 = 0.57 ms and PyTorch 1.60 / 2515 = 0.64 ms.

ModernBERT-shaped, `--pretrained $MINILM --as-modernbert --torch`, the same
CPU, nothing else running (6 layers x 384, 12 heads, GeGLU 576, global
attention in layers 0 and 3, a 128-token window in the others, no dropout;
PyTorch: ModernBertForSequenceClassification with its default sdpa attention;
experiments/results/finetune_throughput_modernbert_cpu.json):

  row                               tokens/row  real  rows  s/step  ex/s  compile s  shapes
  packed (the finetune preset)           128.0 124.1  14.0    0.76  43.1        4.1      1
  length-grouped, cut                     61.9  53.5  32.0    0.80  39.5       18.9      5
  random order, cut                       86.4  53.8  32.0    1.12  28.3        6.6      3
  PyTorch, random order, cut              78.6  53.8  32.0    0.88  35.9          -      -

Packed steps train at 1.20x PyTorch's examples/s, short of 1.5x. PyTorch's
ModernBERT is much cheaper than its BERT (0.88 against 1.60 s/step: a
576-wide GeGLU against BERT's 1536-wide feed-forward block, sdpa
attention), and per token as run it now costs less than ours: 0.88 / 2515 =
0.35 ms against 0.76 / 1792 = 0.42 ms. Where ours goes
(`step_profile.py --pretrained MODERNBERT_FOLDER --max-length 128
--batch-size 14 --pack`, one traced run, ms summed over both threads): 569
of 874 ms in matmuls (284 forward, 285 backward), 266 in other ops (121
forward, 127 backward: the rotary rotations, the GeGLU products, the masks
of the 128-token rows and of the window, norms and softmax), 39 on the
embedding table. With a feed-forward block this narrow, the elementwise
work around the matmuls, which XLA:CPU runs as separate loops, is a third
of the step.

The compiles persist across runs with JAX_COMPILATION_CACHE_DIR=DIR.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flax_mrpc.config import TrainConfig, get_preset
from flax_mrpc.data import sources, tokenization
from flax_mrpc.data.epochs import TrainEpochs
from flax_mrpc.hf import load
from flax_mrpc.modules import PairClassifier
from flax_mrpc.training import steps
from flax_mrpc.training.optimizer import make_optimizer


def spread(items: list, count: int) -> list:
  """`count` items evenly spaced over `items`."""
  return [items[i] for i in np.linspace(0, len(items) - 1, min(count, len(items))).astype(int)]


def pairs_per_step(batch_list) -> float:
  return float(np.mean([b["weights"].sum() for b in batch_list]))


def real_tokens_per_row(batch_list) -> float:
  """Mean real (unpadded) tokens per row, over the rows that hold a pair."""
  rows = np.concatenate([(b["attention_mask"] > 0).sum(axis=1) for b in batch_list])
  return float(rows[rows > 0].mean())


def jax_timer(config):
  """A function timing the train step of the `--pretrained` model on a list
  of batches: (seconds compiling the batch shapes not seen before, seconds
  per step). Each call starts from the pretrained weights."""
  mc, tc = config.model, config.train
  model = PairClassifier(mc, rngs=nnx.Rngs(0))
  load.load_into(model, mc, Path(tc.pretrained))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(tc, 1000)
  step = jax.jit(functools.partial(
      steps.train_step, graphdef=graphdef, tx=tx, loss=steps.PairLoss(tc.pos_weight),
      partitionable_bits=steps.partitionable_bits_by_default(sharded=False)), donate_argnums=0)
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


def random_modernbert(like: str, folder: Path) -> str:
  """A ModernBERT with `like`'s width, depth, heads and tokenizer, random
  weights, saved in `folder`: a GeGLU feed-forward width of 1.5 x hidden
  (ModernBERT-base's 768 -> 1152), global attention every third layer, the
  others a 128-token window, no dropout (as released)."""
  import torch
  import transformers

  bert = json.loads((Path(like) / "config.json").read_text())
  tokenizer = tokenization.load_tokenizer(like)
  hidden = bert["hidden_size"]
  config = transformers.ModernBertConfig(
      vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=bert["num_hidden_layers"],
      num_attention_heads=bert["num_attention_heads"], intermediate_size=hidden * 3 // 2,
      global_attn_every_n_layers=3, local_attention=128, pad_token_id=tokenizer.pad_token_id,
      cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
      bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
  torch.manual_seed(0)
  transformers.ModernBertModel(config).save_pretrained(str(folder))
  tokenizer.save_pretrained(str(folder))
  return str(folder)


def torch_timer(checkpoint: str):
  """A function timing an AdamW step of transformers' PyTorch model in
  training mode (dropout on, as the Trainer runs it) on a list of batches,
  each cut to its longest pair: (None: nothing compiles, seconds per step)."""
  import torch
  from transformers import AutoModelForSequenceClassification

  device = "cuda" if torch.cuda.is_available() else "cpu"
  model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=1).to(device)
  model.train()  # from_pretrained returns it in eval mode: no dropout
  optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
  fields = [k for k in ("input_ids", "token_type_ids", "attention_mask")
            if k in inspect.signature(model.forward).parameters]  # ModernBERT: no segments

  def step(batch):
    seq = int(batch["attention_mask"].sum(axis=1).max())
    inputs = {k: torch.tensor(batch[k][:, :seq]).to(device) for k in fields}
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


def layouts(preset: TrainConfig) -> dict[str, TrainConfig]:
  """The batch layouts to time, the preset's marked."""
  candidates = {
      "packed": dataclasses.replace(preset, pack=True, pad_multiple=None, group_by_length=False),
      "length-grouped, cut": dataclasses.replace(preset, pack=False, pad_multiple=16,
                                                 group_by_length=True),
      "random order, cut": dataclasses.replace(preset, pack=False, pad_multiple=16,
                                               group_by_length=False),
  }
  return {f"{name} (preset)" if layout == preset else name: layout
          for name, layout in candidates.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pretrained", required=True, help="a checkpoint folder")
  parser.add_argument("--as-modernbert", action="store_true",
                      help="time a random ModernBERT of --pretrained's size and tokenizer instead")
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
  checkpoint = (random_modernbert(args.pretrained, Path(tempfile.mkdtemp()))
                if args.as_modernbert else args.pretrained)
  config = load.configure(get_preset("finetune").replace(
      pretrained=checkpoint, max_length=args.max_length))
  tokenizer = tokenization.load_tokenizer(checkpoint)
  train = sources.load("local", args.data_dir)["train"]
  features = tokenization.encode_pairs(tokenizer, train, config.model.max_length).features()
  time_jax = jax_timer(config)
  rows = {}  # name -> (batches, timer)
  for name, layout in layouts(config.train).items():
    rows[f"flax_mrpc, {name}"] = (
        spread(list(TrainEpochs(features, layout, 1).batches(1)), args.steps), time_jax)
  if args.torch:
    shuffled = dataclasses.replace(config.train, pack=False, pad_multiple=None,
                                   group_by_length=False)
    rows["PyTorch, random order, cut"] = (
        spread(list(TrainEpochs(features, shuffled, 1).batches(1)), args.steps),
        torch_timer(checkpoint))
  compile_s, per_step = {}, {name: [] for name in rows}
  for _ in range(args.repeats):
    for name, (batch_list, time_steps) in rows.items():
      compiled, seconds = time_steps(batch_list)
      compile_s.setdefault(name, compiled)
      per_step[name].append(seconds)
  model_type = json.loads((Path(checkpoint) / "config.json").read_text())["model_type"]
  print(f"{model_type}, {config.model.num_layers} layers x {config.model.d_model}, "
        f"{config.train.batch_size} pairs per step, {args.steps} steps on "
        f"{jax.devices()[0].device_kind}, median of {args.repeats} repeats")
  print(f"{'':34} {'tokens/row':>10} {'real':>5} {'rows':>5} {'s/step':>7} {'ex/s':>6} "
        f"{'compile s':>9} {'shapes':>6}  each repeat")
  records = []
  for name, (batch_list, _) in rows.items():
    median = float(np.median(per_step[name]))
    torch_row = compile_s[name] is None
    # PyTorch runs each batch cut to its longest pair; JAX runs the arrays as built.
    row_lengths = [int(b["attention_mask"].sum(axis=1).max()) if torch_row
                   else b["input_ids"].shape[1] for b in batch_list]
    shapes = len({b["input_ids"].shape for b in batch_list})
    record = {"run": name, "tokens_per_row": float(np.mean(row_lengths)),
              "real_tokens_per_row": real_tokens_per_row(batch_list),
              "rows_per_step": float(np.mean([len(b["input_ids"]) for b in batch_list])),
              "pairs_per_step": pairs_per_step(batch_list), "s_per_step": median,
              "examples_per_s": pairs_per_step(batch_list) / median,
              "compile_s": compile_s[name], "compiled_shapes": None if torch_row else shapes,
              "each_repeat_s": per_step[name],
              "model": f"{model_type} {config.model.num_layers} layers x {config.model.d_model}",
              "device_kind": jax.devices()[0].device_kind}
    records.append(record)
    compiled = "" if torch_row else f"{compile_s[name]:9.1f} {shapes:6d}"
    print(f"{name:34} {record['tokens_per_row']:10.1f} {record['real_tokens_per_row']:5.1f} "
          f"{record['rows_per_step']:5.1f} {median:7.2f} {record['examples_per_s']:6.1f} "
          f"{compiled:>16}  " + " ".join(f"{t:.2f}" for t in per_step[name]))
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
  main()
