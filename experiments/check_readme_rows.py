"""Reruns README's from-scratch result rows and says whether they still hold.

    PYTHONPATH=. python experiments/check_readme_rows.py [--data-dir DIR]

For each row it checks (today: `--preset default`, mean of seeds 0-2, on the
2-core CPU), it trains every seed with `python -m flax_mrpc.train` as the
README's command does, prints the per-seed table that `experiments/README.md`
holds, and compares the mean test accuracy and F1, rounded as README prints
them, with README's row. It exits 1 when a row moved: a change that moves
numerics reruns this and updates README in the same commit. The runs are
deterministic on one machine; another CPU or a GPU may round differently, so
run it where the row was measured (README's machine column). About 3 minutes
on 2 CPU cores.

`--preset seed` (100 epochs, measured on an H200) is not rerun here: on a CPU
it takes hours.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# README row label -> (preset, seeds)
ROWS = {"`--preset default` (from scratch), mean of seeds 0–2": ("default", (0, 1, 2))}


def readme_row(label: str) -> tuple[float, float]:
  """(test accuracy, test F1) of README's results row `label`."""
  for line in (ROOT / "README.md").read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if cells[0] == label:
      return float(cells[-2]), float(cells[-1])
  raise SystemExit(f"README.md has no results row {label!r}")


def train(preset: str, seed: int, workdir: Path, data_dir: str | None) -> dict:
  """results.json of `python -m flax_mrpc.train --preset PRESET --seed SEED`."""
  command = [sys.executable, "-m", "flax_mrpc.train", "--preset", preset, "--seed", str(seed),
             "--workdir", str(workdir), "--no-progress"]
  if data_dir:
    command += ["--data-dir", data_dir]
  subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
  return json.loads((workdir / "results.json").read_text())


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-dir", default=None, help="folder with the MRPC files")
  parser.add_argument("--workdirs", type=Path, default=None,
                      help="where the runs go (default: a temporary folder)")
  args = parser.parse_args()
  workdirs = args.workdirs or Path(tempfile.mkdtemp(prefix="readme_rows_"))
  moved = False
  for label, (preset, seeds) in ROWS.items():
    runs = [train(preset, s, workdirs / f"{preset}_s{s}", args.data_dir) for s in seeds]
    print(f"\n{label}\n\n| seed | test accuracy | test F1 | validation acc / F1 | wall time |\n"
          "| --- | --- | --- | --- | --- |")
    for seed, r in zip(seeds, runs):
      print(f"| {seed} | {r['test']['accuracy']:.4f} | {r['test']['f1']:.4f} | "
            f"{r['validation']['accuracy']:.4f} / {r['validation']['f1']:.4f} | "
            f"{r['wall_time_s']:.0f} s (epoch {r['best_epoch']}) |")
    mean = {k: sum(r["test"][k] for r in runs) / len(runs) for k in ("accuracy", "f1")}
    validation = {k: sum(r["validation"][k] for r in runs) / len(runs) for k in ("accuracy", "f1")}
    print(f"| mean | {mean['accuracy']:.4f} | {mean['f1']:.4f} | "
          f"{validation['accuracy']:.4f} / {validation['f1']:.4f} | |\n")
    gives = (round(mean["accuracy"], 4), round(mean["f1"], 4))
    says = readme_row(label)
    if gives == says:
      print(f"holds: README says {says[0]:.4f} / {says[1]:.4f}, the code gives the same")
    else:
      moved = True
      print(f"MOVED: README says {says[0]:.4f} / {says[1]:.4f}, the code gives "
            f"{gives[0]:.4f} / {gives[1]:.4f} on {runs[0]['device']} "
            f"({runs[0]['host_cpus']} CPUs)")
  return 1 if moved else 0


if __name__ == "__main__":
  sys.exit(main())
