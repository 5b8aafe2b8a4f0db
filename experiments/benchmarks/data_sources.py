"""How long does each `--data-source` take to load MRPC, and how much does
its extra add to an install?

Command: PYTHONPATH=. python experiments/benchmarks/data_sources.py --data-dir DIR \
             [--install-sizes]
Machine: any; seconds for the load times; --install-sizes also creates a
         fresh venv per extra (`pip install` of that extra's packages only)
         and reports its size above an empty venv (a few minutes, needs the
         package index).
Load times: `sources.load` twice per source into a fresh cache folder,
in one process; the first call includes importing the source's library and,
for tfds and hf, building its prepared copy.

Measured on the 2-core CPU, `--data-dir ../shared/data/mrpc --install-sizes`:

  source  first load  again   extra above an empty venv
  local       0.07 s  0.06 s  -
  tfds        3.09 s  1.34 s  284 MB
  hf          2.82 s  0.24 s  355 MB
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from flax_mrpc.data import sources

ROOT = Path(__file__).resolve().parents[2]


def venv_megabytes(packages: list[str], folder: Path) -> float:
  subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
  if packages:
    subprocess.run([str(folder / "bin" / "pip"), "install", "--quiet", *packages], check=True)
  return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-dir", required=True, help="folder of the original MRPC files")
  parser.add_argument("--install-sizes", action="store_true")
  args = parser.parse_args()
  print(f"{'source':7} {'first load s':>12} {'again s':>8}")
  for source in sources.SOURCES:
    cache = tempfile.mkdtemp()
    times = []
    for _ in range(2):
      start = time.perf_counter()
      sources.load(source, args.data_dir, cache_dir=cache)
      times.append(time.perf_counter() - start)
    print(f"{source:7} {times[0]:12.2f} {times[1]:8.2f}")
  if args.install_sizes:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    with tempfile.TemporaryDirectory() as tmp:
      empty = venv_megabytes([], Path(tmp) / "empty")
      for extra in ("tfds", "hf"):
        size = venv_megabytes(extras[extra], Path(tmp) / extra)
        print(f"extra [{extra}]: {size - empty:.0f} MB above an empty venv ({extras[extra]})")


if __name__ == "__main__":
  main()
