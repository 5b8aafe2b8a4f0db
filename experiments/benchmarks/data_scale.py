"""How long until the first training step, and how much memory, at GLUE's
large-task sizes (QQP, MNLI: about 400k pairs) and beyond?

Command: PYTHONPATH=. python experiments/benchmarks/data_scale.py --pretrained PATH \
             [--sizes 10000 100000 400000 2000000] [--folder /tmp/data_scale] \
             [--baseline-tree DIR --baseline-sizes 400000 --baseline-label TEXT] \
             [--repeats N] [--json FILE] [--plot FILE]
Machine: a 2-core CPU takes about 12 minutes for the four sizes and one
         baseline row, with --repeats 3.

For each size N it writes QQP-shaped CSV files (`question1,question2,is_duplicate`):
N training pairs and N / 10 validation pairs, each sentence drawn at random
from MRPC's train split (control characters removed), labels random. Then
it runs `python -m flax_mrpc.train --train-file ... --validation-file ...
--symmetric --epochs 1 --pretrained PATH` twice in a fresh workdir: cold
(no encoded-split cache) and cached (the same command again, after
--overwrite). Each run is a child process that stops right after its first
training step has finished and reports:

  first step s   seconds from the command's start to the end of step 1
  peak RSS GiB   the child's VmHWM (/proc/self/status) at that moment
  cache GiB      the size of the workdir's encoded-split cache on disk

Measured with nothing else running on a 2-core AMD EPYC with AVX-512,
24 GiB, --repeats 3 (the median run of three), --baseline-tree a checkout
of 54d1cb6 (BERT's pre-tokenizer on every pair), in one run:

| train pairs | first step cold s | cached s | peak RSS cold GiB | cached GiB | cache GiB |
| --- | --- | --- | --- | --- | --- |
| 10,000 | 11.7 | 6.5 | 1.63 | 1.49 | 0.006 |
| 100,000 | 14.6 | 6.6 | 1.75 | 1.62 | 0.059 |
| 400,000, 54d1cb6 | 30.3 | - | 1.77 | - | - |
| 400,000 | 31.3 | 8.4 | 1.78 | 1.57 | 0.235 |
| 2,000,000 | 111.1 | 9.2 | 1.99 | 1.73 | 1.173 |

--baseline-tree DIR adds a cold row for each of --baseline-sizes run with
the flax_mrpc of DIR (a checkout of an earlier commit) in the same run,
named --baseline-label. --repeats N measures each run N times and
reports the run with the median seconds (this shared machine's speed
moves by a tenth from one minute to the next). The
table goes to stdout (markdown) and, with --json, to FILE; --plot writes
size against seconds and GiB as a PNG.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GIB = 2**30
CHILD_FLAG = "--as-child"


def cpu_model() -> str:
  """The CPU's model name and its vector / matrix features, for every figure."""
  try:
    info = Path("/proc/cpuinfo").read_text()
  except OSError:
    return platform.processor() or "unknown CPU"
  model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                if line.startswith("model name")), "unknown CPU")
  flags = next((line.split(":", 1)[1].split() for line in info.splitlines()
                if line.startswith("flags")), [])
  wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
  return f"{model}, {os.cpu_count()} cores, {' '.join(wanted) or 'no avx2'}"


def mrpc_sentences(mrpc_dir: Path) -> list[str]:
  """The sentences of MRPC's train split, control characters removed."""
  from flax_mrpc.data import mrpc

  train = mrpc.load_splits(mrpc_dir)["train"]
  controls = dict.fromkeys([*range(32), *range(127, 160)])
  return sorted({s.translate(controls) for e in train for s in (e.sentence1, e.sentence2)})


def write_pairs(path: Path, sentences: list[str], count: int, seed: int) -> None:
  """`count` random pairs of `sentences` with random 0/1 labels, as QQP's columns."""
  rng = np.random.default_rng(seed)
  first, second = rng.integers(len(sentences), size=(2, count))
  labels = rng.integers(2, size=count)
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["question1", "question2", "is_duplicate"])
    for i, j, label in zip(first, second, labels):
      writer.writerow([sentences[i], sentences[j], int(label)])


def peak_rss_bytes() -> int:
  """This process's peak resident memory (VmHWM)."""
  for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
      return int(line.split()[1]) * 1024
  raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(argv: list[str]) -> None:
  """Runs `flax_mrpc.train`'s main with `argv`; right after the first train
  step has finished, prints one JSON line with the peak RSS and exits."""
  import jax

  from flax_mrpc import train
  from flax_mrpc.training import parallel

  step = parallel.DataParallel.train_step

  def first_step(self, state, batch, rng):
    out = jax.block_until_ready(step(self, state, batch, rng))
    print(json.dumps({"first_step_at": time.time(), "peak_rss": peak_rss_bytes()}), flush=True)
    os._exit(0)
    return out

  parallel.DataParallel.train_step = first_step
  sys.exit(train.main(argv))


def folder_bytes(path: Path) -> int:
  return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def measure(argv: list[str], cache_dir: Path, tree: str | None = None) -> dict[str, float]:
  """Starts a child on `argv` (importing flax_mrpc from `tree` if given);
  the seconds to its first step, its peak RSS and the cache's size after it."""
  env = os.environ | {"TQDM_DISABLE": "1"} | ({"PYTHONPATH": tree} if tree else {})
  start = time.time()
  done = subprocess.run([sys.executable, __file__, CHILD_FLAG, *argv], capture_output=True,
                        text=True, env=env)
  report = next((json.loads(line) for line in done.stdout.splitlines()
                 if line.startswith("{")), None)
  if report is None:
    raise RuntimeError(f"the run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
  return {"first_step_s": report["first_step_at"] - start,
          "peak_rss_gib": report["peak_rss"] / GIB,
          "cache_gib": folder_bytes(cache_dir) / GIB,
          "log": [line for line in done.stderr.splitlines() if "cache" in line]}


def median_run(results: list[dict]) -> dict:
  """Of repeated measurements, the one with the median seconds to the first step."""
  return sorted(results, key=lambda r: r["first_step_s"])[len(results) // 2]


def main() -> None:
  if sys.argv[1:2] == [CHILD_FLAG]:
    run_child(sys.argv[2:])
    return
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--pretrained", required=True)
  parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 400_000,
                                                                  2_000_000])
  parser.add_argument("--folder", type=Path, default=Path("/tmp/data_scale"))
  parser.add_argument("--mrpc-dir", type=Path,
                      default=Path(os.environ.get("FLAX_MRPC_DATA_DIR", "../shared/data/mrpc")))
  parser.add_argument("--runs", nargs="+", default=["cold", "cached"])
  parser.add_argument("--repeats", type=int, default=1,
                      help="runs of each kind per size; the table gives the median")
  parser.add_argument("--baseline-tree", help="a checkout whose flax_mrpc gives baseline rows")
  parser.add_argument("--baseline-sizes", type=int, nargs="+", default=[400_000])
  parser.add_argument("--baseline-label", default="before the cache",
                      help="what the table and the plot call the baseline rows")
  parser.add_argument("--json", type=Path)
  parser.add_argument("--plot", type=Path)
  args = parser.parse_args()
  print(f"machine: {cpu_model()}", flush=True)
  sentences = mrpc_sentences(args.mrpc_dir)
  rows = []
  for size in args.sizes:
    data = args.folder / f"n{size}"
    data.mkdir(parents=True, exist_ok=True)
    train_file, validation_file = data / "train.csv", data / "dev.csv"
    if not train_file.is_file():
      write_pairs(train_file, sentences, size, seed=size)
      write_pairs(validation_file, sentences, size // 10, seed=size + 1)
    workdir = data / "run"
    argv = ["--train-file", str(train_file), "--validation-file", str(validation_file),
            "--columns", "question1,question2,is_duplicate", "--symmetric", "--epochs", "1",
            "--pretrained", args.pretrained, "--workdir", str(workdir), "--overwrite"]
    row = {"pairs": size, "validation_pairs": size // 10}
    runs = [(run, None) for run in args.runs]
    if args.baseline_tree and size in args.baseline_sizes:
      runs.insert(0, ("baseline", args.baseline_tree))
    for run, tree in runs:
      results = []
      for _ in range(args.repeats):
        if run in ("cold", "baseline"):
          subprocess.run(["rm", "-rf", str(workdir)], check=True)
        results.append(measure(argv, workdir / "data_cache", tree))
        print(f"{size} pairs, {run}: first step {results[-1]['first_step_s']:.1f} s, peak RSS "
              f"{results[-1]['peak_rss_gib']:.2f} GiB, cache {results[-1]['cache_gib']:.3f} GiB "
              f"{results[-1]['log']}", flush=True)
      row |= {f"{run}_{k}": v for k, v in median_run(results).items()}
      row[f"{run}_first_step_s_each"] = [r["first_step_s"] for r in results]
    rows.append(row)
  print("\n| train pairs | first step cold (s) | first step cached (s) | peak RSS cold (GiB) "
        "| peak RSS cached (GiB) | cache on disk (GiB) |\n| --- | --- | --- | --- | --- | --- |")
  for r in rows:
    if "baseline_first_step_s" in r:
      print(f"| {r['pairs']:,}, {args.baseline_label} | {r['baseline_first_step_s']:.1f} | - "
            f"| {r['baseline_peak_rss_gib']:.2f} | - | - |")
    print(f"| {r['pairs']:,} | {r.get('cold_first_step_s', float('nan')):.1f} "
          f"| {r.get('cached_first_step_s', float('nan')):.1f} "
          f"| {r.get('cold_peak_rss_gib', float('nan')):.2f} "
          f"| {r.get('cached_peak_rss_gib', float('nan')):.2f} "
          f"| {r.get('cached_cache_gib', r.get('cold_cache_gib', float('nan'))):.3f} |")
  if args.json:
    args.json.write_text(json.dumps({"machine": cpu_model(), "baseline": args.baseline_label,
                                     "rows": rows}, indent=2) + "\n")
  if args.plot:
    plot(rows, args.plot, args.baseline_label)


def plot(rows: list[dict], path: Path, baseline_label: str) -> None:
  """Pairs (log scale) against seconds to the first step and peak RSS."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  sizes = [r["pairs"] for r in rows]
  figure, (seconds, memory) = plt.subplots(1, 2, figsize=(10, 4))
  for run in ("cold", "cached"):
    if f"{run}_first_step_s" in rows[0]:
      seconds.plot(sizes, [r[f"{run}_first_step_s"] for r in rows], "o-", label=run)
      memory.plot(sizes, [r[f"{run}_peak_rss_gib"] for r in rows], "o-", label=f"{run} peak RSS")
  memory.plot(sizes, [r.get("cached_cache_gib", r.get("cold_cache_gib")) for r in rows], "s--",
              label="cache on disk")
  before = [r for r in rows if "baseline_first_step_s" in r]
  if before:
    seconds.plot([r["pairs"] for r in before], [r["baseline_first_step_s"] for r in before], "kx",
                 markersize=9, label=baseline_label)
    memory.plot([r["pairs"] for r in before], [r["baseline_peak_rss_gib"] for r in before], "kx",
                markersize=9, label=f"peak RSS, {baseline_label}")
  for axis, label in ((seconds, "seconds to the first step"), (memory, "GiB")):
    axis.set_xscale("log")
    axis.set_xlabel("training pairs (validation: a tenth more)")
    axis.set_ylabel(label)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
  figure.suptitle(f"flax_mrpc data at scale: {cpu_model()}", fontsize=9)
  figure.tight_layout()
  figure.savefig(path, dpi=120)


if __name__ == "__main__":
  main()
