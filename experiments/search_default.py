"""Which from-scratch recipe should the `default` preset be?

Question: the best from-scratch configuration on the MRPC validation split
that still trains within 5 minutes on a 2-core CPU.
Command:  PYTHONPATH=. python experiments/search_default.py --round 2 --seeds 0 1
          (add --tiny for the smoke variant a test runs)
Machine:  any; the recorded runs used one H200, round 1 (12 candidates x 2
          seeds) in 4.7 minutes. Only validation metrics are read; the test
          split is not looked at.
Output:   results/default_search_round{N}.json: one record per (candidate,
          seed) with its best validation epoch's metrics; a table sorted by the
          mean validation MRPC score, (accuracy + F1) / 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from run_study import TINY

from flax_mrpc.config import get_preset
from flax_mrpc.train import train_and_evaluate

# Round 1 started from the recipe below (match embedding, dropout 0.1, 10
# epochs, no early stop); its winner, dropout 0.3, became the `default` preset
# with patience 3. Round 2 starts from that preset. Each candidate changes a
# few fields of its round's base.
ROUNDS = {
    1: (dict(match_embedding=True, dropout=0.1, attention_dropout=0.1, patience=None), {
        "no-match (plain BERT inputs)": dict(match_embedding=False),
        "base": {},
        "dropout 0.2": dict(dropout=0.2, attention_dropout=0.2),
        "dropout 0.3": dict(dropout=0.3, attention_dropout=0.3),
        "lr 1e-3": dict(learning_rate=1e-3),
        "epochs 3": dict(epochs=3),
        "vocab 2000": dict(vocab_size=2000),
        "vocab 4000": dict(vocab_size=4000),
        "1 layer": dict(num_layers=1),
        "d64 ff256": dict(d_model=64, d_ff=256),
        "swap augment, 3 epochs": dict(swap_augment=True, epochs=3),
        "dropout 0.2, vocab 4000": dict(dropout=0.2, attention_dropout=0.2, vocab_size=4000),
    }),
    2: ({}, {
        "base": {},
        "pos_weight 1.5": dict(pos_weight=1.5),
        "pos_weight 2.0": dict(pos_weight=2.0),
        "epochs 5": dict(epochs=5),
        "vocab 4000": dict(vocab_size=4000),
        "dropout 0.4": dict(dropout=0.4, attention_dropout=0.4),
        "lr 3e-4": dict(learning_rate=3e-4),
        "1 layer": dict(num_layers=1),
    }),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=Path, default=Path("experiments/results"))
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  parser.add_argument("--round", type=int, choices=sorted(ROUNDS), default=max(ROUNDS))
  parser.add_argument("--tiny", action="store_true", help="two tiny candidates, one seed")
  args = parser.parse_args()
  base, candidates = ROUNDS[args.round]
  candidates = dict(list(candidates.items())[:2]) if args.tiny else candidates
  seeds = args.seeds[:1] if args.tiny else args.seeds
  records = []
  with tempfile.TemporaryDirectory() as scratch:
    for name, changes in candidates.items():
      for seed in seeds:
        fields = {**base, **changes, **(TINY if args.tiny else {}), "seed": seed}
        config = get_preset("default").replace(**fields)
        start = time.time()
        result = train_and_evaluate(config, Path(scratch) / f"{len(records)}", args.data_dir,
                                    progress=False)
        records.append({"candidate": name, "seed": seed, "changes": fields,
                        "best_epoch": result["best_epoch"], "validation": result["validation"],
                        "wall_time_s": time.time() - start, "device": result["device"]})
  args.out.mkdir(parents=True, exist_ok=True)
  name = f"default_search_round{args.round}{'_tiny' if args.tiny else ''}.json"
  (args.out / name).write_text(json.dumps(records, indent=1) + "\n")
  rows = []
  for candidate in candidates:
    runs = [r for r in records if r["candidate"] == candidate]
    acc = statistics.mean(r["validation"]["accuracy"] for r in runs)
    f1 = statistics.mean(r["validation"]["f1"] for r in runs)
    rows.append(((acc + f1) / 2, acc, f1, [r["best_epoch"] for r in runs], candidate))
  print(f"{'candidate':32s} {'score':>7s} {'val acc':>8s} {'val F1':>8s}  best epochs")
  for score, acc, f1, epochs, candidate in sorted(rows, reverse=True):
    print(f"{candidate:32s} {score:7.4f} {acc:8.4f} {f1:8.4f}  {epochs}")


if __name__ == "__main__":
  main()
