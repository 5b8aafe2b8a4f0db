"""The data study (seed section 2): labels per split, and sentence and pair
lengths in tokens with the share of pairs each max_length truncates.

    PYTHONPATH=. python experiments/data_stats.py [--data-dir DIR]

Tokens are those of the `default` preset: a WordPiece vocabulary of 8000
learned on the train split. A pair is `[CLS] sentence1 [SEP] sentence2 [SEP]`.
Writes `OUT/data.json` (counts per label, length histograms as
{tokens: pairs}); `report.py` draws the figures. Takes seconds on any CPU.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

from flax_mrpc.config import get_preset
from flax_mrpc.data import sources, tokenization
from flax_mrpc.data.examples import DataError

MAX_LENGTHS = (32, 64, 128)


def histogram(values: list[int]) -> dict[str, int]:
  return {str(k): v for k, v in sorted(collections.Counter(values).items())}


def data_stats(data_dir: str | None) -> dict:
  splits = sources.load("local", data_dir)
  vocab_size = get_preset("default").model.vocab_size
  with tempfile.TemporaryDirectory() as scratch:
    sentences = [s for e in splits["train"] for s in (e.sentence1, e.sentence2)]
    tokenizer = tokenization.train_wordpiece(sentences, vocab_size, True, Path(scratch))
  stats = {"tokenizer": f"WordPiece, {vocab_size} tokens, learned on train", "splits": {}}
  for name, examples in splits.items():
    first = [len(tokenizer.tokenize(e.sentence1)) for e in examples]
    second = [len(tokenizer.tokenize(e.sentence2)) for e in examples]
    pairs = [a + b + 3 for a, b in zip(first, second)]
    stats["splits"][name] = {
        "labels": {"paraphrase": sum(e.label == 1 for e in examples),
                   "not paraphrase": sum(e.label == 0 for e in examples)},
        "sentence_tokens": histogram(first + second),
        "pair_tokens": histogram(pairs),
        "truncated_share": {str(m): sum(p > m for p in pairs) / len(pairs) for m in MAX_LENGTHS},
    }
  return stats


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--out", type=Path, default=Path("experiments/results/studies"))
  args = parser.parse_args()
  try:
    stats = data_stats(args.data_dir)
  except DataError as e:
    raise SystemExit(f"error: {e}") from None
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "data.json").write_text(json.dumps(stats, indent=1) + "\n")
  for name, split in stats["splits"].items():
    print(f"{name:10s} {split['labels']}  truncated: "
          + ", ".join(f"{m}: {s:.1%}" for m, s in split["truncated_share"].items()))


if __name__ == "__main__":
  main()
