"""Recompute a split's metrics from a workdir's best checkpoint.

    python -m flax_mrpc.evaluate --workdir runs/default --split test
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc.data import sources
from flax_mrpc.data.examples import UNLABELLED, DataError
from flax_mrpc.inference import load_trained
from flax_mrpc.training.metrics import at_threshold


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m flax_mrpc.evaluate", description=__doc__)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--split", choices=["validation", "test"], default="validation")
  parser.add_argument("--data-dir", default=None)
  args = parser.parse_args(argv)
  try:
    trained = load_trained(args.workdir)
    examples = sources.load("local", args.data_dir)[args.split]
    if any(e.label == UNLABELLED for e in examples):
      raise DataError(f"the {args.split} split has no labels; use flax_mrpc.predict.")
    probabilities = trained.probabilities(examples)
  except ValueError as e:
    return cli.report(e)
  metrics = at_threshold([e.label for e in examples], probabilities)
  print(json.dumps({"split": args.split, "best_epoch": trained.best_epoch, **metrics}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
