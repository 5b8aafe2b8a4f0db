"""Score sentence pairs with a workdir's best checkpoint.

    python -m flax_mrpc.predict --workdir runs/default --pair "He left." "He went away."
    python -m flax_mrpc.predict --workdir runs/default --input pairs.tsv --output scored.tsv
    python -m flax_mrpc.predict --workdir runs/default --glue-submission

`--input` is a TSV of `sentence1<TAB>sentence2` lines (a first line
`sentence1<TAB>sentence2` is a header). Output lines are
`probability<TAB>prediction<TAB>sentence1<TAB>sentence2`. `--glue-submission`
scores the test split and writes `WORKDIR/MRPC.tsv` (`index<TAB>prediction`),
the file the GLUE server takes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from flax_mrpc import data
from flax_mrpc.checkpoint import CheckpointError
from flax_mrpc.inference import load_trained


def read_pairs(path: Path) -> list[data.Example]:
  """Examples (label UNLABELLED) from a `sentence1<TAB>sentence2` file."""
  if not path.is_file():
    raise data.DataError(f"{path}: file not found.")
  examples = []
  for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
    if not line.strip() or (n == 1 and line == "sentence1\tsentence2"):
      continue
    fields = line.split("\t")
    if len(fields) != 2:
      raise data.DataError(f"{path}:{n}: expected 'sentence1<TAB>sentence2', "
                           f"found {len(fields)} field(s).")
    examples.append(data.Example(fields[0], fields[1], data.UNLABELLED, len(examples)))
  return examples


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m flax_mrpc.predict",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--pair", nargs=2, metavar=("SENTENCE1", "SENTENCE2"))
  source.add_argument("--input", type=Path, help="TSV of sentence1<TAB>sentence2 lines")
  source.add_argument("--glue-submission", action="store_true",
                      help="write WORKDIR/MRPC.tsv for the test split")
  parser.add_argument("--output", type=Path, help="write here instead of standard output")
  parser.add_argument("--data-dir", default=None, help="for --glue-submission")
  args = parser.parse_args(argv)
  try:
    trained = load_trained(args.workdir)
    if args.glue_submission:
      examples = data.load_splits(data.find_data_dir(args.data_dir))["test"]
    elif args.input:
      examples = read_pairs(args.input)
    else:
      examples = [data.Example(args.pair[0], args.pair[1], data.UNLABELLED, 0)]
    probabilities = trained.probabilities(examples)
  except (data.DataError, CheckpointError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.glue_submission:
    lines = ["index\tprediction"] + [f"{e.idx}\t{int(p >= 0.5)}"
                                     for e, p in zip(examples, probabilities)]
    output = args.output or Path(args.workdir) / "MRPC.tsv"
  else:
    lines = [f"{p:.6f}\t{int(p >= 0.5)}\t{e.sentence1}\t{e.sentence2}"
             for e, p in zip(examples, probabilities)]
    output = args.output
  text = "\n".join(lines) + "\n"
  if output is None:
    sys.stdout.write(text)
  else:
    output.write_text(text)
    print(f"wrote {len(examples)} predictions to {output}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
