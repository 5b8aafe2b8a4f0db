"""What scoring each MRPC pair in both orders costs and gains: the finetune
preset (all-MiniLM-L6-v2, packed) scored one order against both orders.

    PYTHONPATH=. python experiments/symmetric_scoring.py [--seeds 0 1 2]

Scoring does not change training, so each seed trains once (the finetune
preset with `symmetric_eval=true`, every epoch's checkpoint kept). Each
epoch's parameters then score validation in the given order, p(a, b), and
swapped, p(b, a). One-order scoring picks its epoch on p(a, b), symmetric
scoring on their mean: each on validation, as training does. The test split
is scored once at each pick. Reported per seed and scoring: validation and
test accuracy/F1, the share of test pairs whose answer changes when the two
sentences are swapped (flip rate), and the seconds to score the test split.
Results: experiments/results/symmetric_scoring.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from flax_mrpc.config import get_preset
from flax_mrpc.data import sources, tokenization
from flax_mrpc.hf.load import configure
from flax_mrpc.inference import load_trained
from flax_mrpc.modules import PairClassifier
from flax_mrpc.train import train_and_evaluate
from flax_mrpc.training import metrics, steps
from flax_mrpc.training.checkpoint import Checkpointer
from flax_mrpc.training.workdir import RESULTS_FILE
from flax_mrpc.training.scoring import predict_probabilities

sys.path.insert(0, str(Path(__file__).resolve().parent))
from studies import minilm_dir  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "symmetric_scoring.json"


def scorings(probabilities: list[np.ndarray]) -> dict[str, np.ndarray]:
  """{one order, both orders} probabilities from [p(a, b), p(b, a)]."""
  return {"one order": probabilities[0], "both orders": np.mean(probabilities, axis=0)}


def run_seed(seed: int, workdirs: Path, data_dir: str | None) -> dict[str, dict]:
  config = configure(get_preset("finetune").replace(pretrained=minilm_dir(), seed=seed,
                                                    symmetric_eval=True))
  workdir = workdirs / f"seed{seed}"
  if not (workdir / RESULTS_FILE).exists():  # a finished seed is scored again, not retrained
    train_and_evaluate(config, workdir, data_dir, progress=False,
                       keep_checkpoints=config.train.epochs)
  splits = sources.load("local", data_dir)
  trained = load_trained(workdir)
  tc, max_length = config.train, config.model.max_length
  views = {name: tokenization.encode_in_memory(trained.tokenizer, splits[name], max_length,
                                               (False, True), config.model.match_embedding)
           for name in ("validation", "test")}
  graphdef, template = nnx.split(PairClassifier(config.model, rngs=nnx.Rngs(0)))
  eval_fn = jax.jit(functools.partial(steps.eval_step, graphdef=graphdef))

  def score(params, view) -> np.ndarray:
    return predict_probabilities(eval_fn, params, view, tc.batch_size, tc.pad_multiple, tc.pack)

  checkpointer = Checkpointer(workdir / "checkpoints", keep_last=tc.epochs)
  try:
    history = checkpointer.latest_meta()["history"]
    epochs = []
    for record in history:
      params = checkpointer.restore_params(template, tc, record["step"])
      validation = scorings([score(params, v) for v in views["validation"]])
      epochs.append({"epoch": record["epoch"], "params": params, "validation": {
          name: metrics.at_threshold(views["validation"][0].labels, p)
          for name, p in validation.items()}})
  finally:
    checkpointer.close()
  labels = views["test"][0].labels
  out = {}
  for name in ("one order", "both orders"):
    best = max(epochs, key=lambda e: metrics.mrpc_score(e["validation"][name]))
    score(best["params"], views["test"][0])  # compiled before timing
    start = time.perf_counter()
    test = [score(best["params"], v) for v in views["test"][:1 if name == "one order" else 2]]
    seconds = time.perf_counter() - start
    if name == "one order":
      test.append(score(best["params"], views["test"][1]))
    probabilities = scorings(test)[name]
    swapped = test[1] if name == "one order" else scorings(test[::-1])[name]
    out[name] = {
        "best_epoch": best["epoch"], "validation": best["validation"][name],
        "test": metrics.at_threshold(labels, probabilities),
        "test_flip_rate": float(np.mean((probabilities >= 0.5) != (swapped >= 0.5))),
        "test_scoring_s": seconds}
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--workdirs", default="runs/symmetric_scoring")
  parser.add_argument("--data-dir")
  args = parser.parse_args()
  records = []
  for seed in args.seeds:
    for scoring, record in run_seed(seed, Path(args.workdirs), args.data_dir).items():
      records.append({"seed": seed, "scoring": scoring, **record})
      t = record["test"]
      print(f"seed {seed} {scoring:11s} epoch {record['best_epoch']} test acc "
            f"{t['accuracy']:.4f} F1 {t['f1']:.4f} flip {record['test_flip_rate']:.4f} "
            f"scoring {record['test_scoring_s']:.2f} s", flush=True)
    machine = f"{jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores"
    OUT.write_text(json.dumps({"machine": machine, "records": records}, indent=1) + "\n")


if __name__ == "__main__":
  main()
