"""Score sentence pairs with a workdir's best checkpoint, or a checkpoint's own head.

    python -m flax_mrpc.predict --workdir runs/default --pair "He left." "He went away."
    python -m flax_mrpc.predict --pretrained textattack/roberta-base-MRPC --input pairs.tsv
    python -m flax_mrpc.predict --workdir runs/default --input pairs.tsv --output scored.tsv
    python -m flax_mrpc.predict --workdir runs/default --glue-submission

`--input` is a UTF-8 TSV of `sentence1<TAB>sentence2` lines (a first line
`sentence1<TAB>sentence2` is a header; empty lines are skipped). The whole
file is checked before anything is scored, and every bad line is reported
(`FILE:LINE: problem`); then it is read, scored and written BATCH_PAIRS pairs
at a time, so a file of any length streams. Output lines are
`probability<TAB>prediction<TAB>sentence1<TAB>sentence2`. `--glue-submission`
scores the test split and writes `WORKDIR/MRPC.tsv` (`index<TAB>prediction`),
the file the GLUE server takes.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from tqdm import tqdm

from flax_mrpc import cli  # first: it quiets transformers before that is imported
from flax_mrpc.data import sources, tsv
from flax_mrpc.data.examples import UNLABELLED, DataError, Example
from flax_mrpc.inference import load_checkpoint, load_trained

HEADER = ["sentence1", "sentence2"]
BATCH_PAIRS = 4096  # pairs read, scored and written at a time


def _pair_rows(path: Path, problems: list[str]) -> Iterator[list[str]]:
  for number, fields in tsv.rows(path, 2, (0, 1), problems):
    if not (number == 1 and fields == HEADER):
      yield fields


def check_pairs_file(path: Path) -> int:
  """Reads all of `path` once and returns its number of pairs; raises one
  DataError listing every bad line."""
  if not path.is_file():
    raise DataError(f"{path}: file not found. Pass --input a TSV of "
                         "sentence1<TAB>sentence2 lines.")
  problems: list[str] = []
  count = sum(1 for _ in _pair_rows(path, problems))
  if problems:
    raise DataError(*tsv.capped(problems))
  if not count:
    raise DataError(f"{path}: no pairs. Write one sentence1<TAB>sentence2 pair per line.")
  return count


def read_pairs(path: Path) -> Iterator[Example]:
  """The examples (label UNLABELLED) of a file `check_pairs_file` passed, streamed."""
  for idx, (sentence1, sentence2) in enumerate(_pair_rows(path, [])):
    yield Example(sentence1, sentence2, UNLABELLED, idx)


def check_pair_argument(sentence1: str, sentence2: str) -> None:
  """Raises one DataError listing what is wrong with the two `--pair` sentences."""
  problems = [f"--pair sentence {i}: {p}"
              for i, text in enumerate((sentence1, sentence2), start=1)
              if (p := tsv.sentence_problem(text))]
  if problems:
    raise DataError(*problems)


def _batched(examples: Iterable[Example], size: int) -> Iterator[list[Example]]:
  iterator = iter(examples)
  while batch := list(itertools.islice(iterator, size)):
    yield batch


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m flax_mrpc.predict",
                                   description=__doc__.splitlines()[0])
  model = parser.add_mutually_exclusive_group(required=True)
  model.add_argument("--workdir", metavar="DIR", help="the --workdir of a training run")
  model.add_argument("--pretrained", metavar="PATH_OR_ID",
                     help="a Hugging Face checkpoint with its own 2-label classification head "
                          "(e.g. one fine-tuned on MRPC), scored without training")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--pair", nargs=2, metavar=("SENTENCE1", "SENTENCE2"))
  source.add_argument("--input", type=Path, metavar="FILE",
                      help="UTF-8 TSV of sentence1<TAB>sentence2 lines")
  source.add_argument("--glue-submission", action="store_true",
                      help="write WORKDIR/MRPC.tsv for the test split")
  parser.add_argument("--output", type=Path, metavar="FILE",
                      help="write here instead of standard output")
  parser.add_argument("--data-dir", default=None, metavar="DIR", help="for --glue-submission")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  args = parser.parse_args(argv)
  try:
    if args.glue_submission:
      examples = sources.load("local", args.data_dir)["test"]
      total = len(examples)
    elif args.input:
      total = check_pairs_file(args.input)
      examples = read_pairs(args.input)
    else:
      check_pair_argument(*args.pair)
      examples, total = [Example(*args.pair, UNLABELLED, 0)], 1
    if args.glue_submission and args.pretrained and not args.output:
      raise ValueError("--glue-submission with --pretrained needs --output FILE.")
    trained = load_trained(args.workdir) if args.workdir else load_checkpoint(args.pretrained)
    output = args.output or (Path(args.workdir) / "MRPC.tsv" if args.glue_submission else None)
    with contextlib.ExitStack() as stack:
      out = sys.stdout if output is None else stack.enter_context(open(output, "w"))
      if args.glue_submission:
        out.write("index\tprediction\n")
      bar = stack.enter_context(tqdm(total=total, unit="pairs", leave=False,
                                     disable=args.no_progress or total < BATCH_PAIRS))
      for batch in _batched(examples, BATCH_PAIRS):
        probabilities = trained.probabilities(batch)
        out.writelines(
            f"{e.idx}\t{int(p >= 0.5)}\n" if args.glue_submission
            else f"{p:.6f}\t{int(p >= 0.5)}\t{e.sentence1}\t{e.sentence2}\n"
            for e, p in zip(batch, probabilities))
        bar.update(len(batch))
  except (ValueError, OSError) as e:
    return cli.report(e)
  if output is not None:
    print(f"wrote {total} predictions to {output}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
