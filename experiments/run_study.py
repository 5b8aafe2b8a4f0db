"""Runs a study of `studies.py`: every variant for every seed.

    PYTHONPATH=. python experiments/run_study.py seq_length [--seeds 0 1 2] [--tiny]

Each run trains with `flax_mrpc.train.train_and_evaluate` in its own workdir,
`WORKDIRS/<hash of its config>`: a finished run there is read back instead of
trained again (runs shared by studies, such as the `default` preset, train
once), and an interrupted one resumes from its last checkpoint. After every
run, `OUT/<study>.json` is rewritten with all records so far: per (variant,
seed) the config changes, the best validation epoch's metrics, the test
metrics at that epoch, test accuracy by pair length, the per-epoch history,
the parameter count, the wall time and the device; the records it already
held of other runs stay (runs trained on another machine, other variants).
`--collect` trains nothing and writes the file from the finished runs.
`--tiny` trains the first variant with a tiny model for one epoch on 10% of
the train split, one seed, into `experiments/results/studies_tiny/` unless
`--out` is given (the smoke test of the study); with `--collect`, it reads
back every variant's tiny run that is there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from flax_mrpc.training import pretraining
from flax_mrpc.config import Config, get_preset, pretraining_config
from flax_mrpc.data import sources
from flax_mrpc.data.examples import DataError, Example
from flax_mrpc.hf.load import configure
from flax_mrpc.train import train_and_evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from studies import STUDIES, Study, Variant, minilm_dir  # noqa: E402

# --tiny: the first variant with these fields on top (so all studies share one
# tiny run per preset), one epoch on 10% of the train split.
TINY = dict(vocab_size=500, max_length=32, d_model=16, num_heads=2, d_ff=32, num_layers=1,
            epochs=1, batch_size=128, train_fraction=0.1)
LENGTH_BUCKETS = (0, 30, 40, 50)  # words in the pair: <30, 30-39, 40-49, >=50


def variant_config(variant: Variant, seed: int, tiny: bool) -> Config:
  config = get_preset(variant.preset).replace(**{**variant.changes, **(TINY if tiny else {})},
                                               seed=seed)
  return configure(config.replace(pretrained=minilm_dir())) if variant.needs_minilm else config


def config_hash(config: Config) -> str:
  return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def file_hash(path: Path) -> str | None:
  return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else None


def accuracy_by_length(workdir: Path, test: list[Example]) -> dict[str, dict[str, float]]:
  """Test accuracy of the run's `test_predictions.tsv` per bucket of words in
  the pair, with the bucket's share of paraphrases (the always-"paraphrase"
  accuracy)."""
  rows = np.loadtxt(workdir / "test_predictions.tsv", skiprows=1, ndmin=2)
  predicted = dict(zip(rows[:, 0].astype(int), rows[:, 1].astype(int)))
  words = np.array([len(e.sentence1.split()) + len(e.sentence2.split()) for e in test])
  labels = np.array([e.label for e in test])
  correct = np.array([predicted[e.idx] for e in test]) == labels
  bucket = np.searchsorted(LENGTH_BUCKETS, words, side="right") - 1
  edges = list(LENGTH_BUCKETS[1:]) + [None]
  out = {}
  for b, (low, high) in enumerate(zip(LENGTH_BUCKETS, edges)):
    name = f"{low}-{high - 1}" if high else f">={low}"
    members = bucket == b
    out[name] = {"pairs": int(members.sum()),
                 "accuracy": float(correct[members].mean()) if members.any() else None,
                 "paraphrase_share": float(labels[members].mean()) if members.any() else None}
  return out


def run_one(config: Config, workdir: Path, data_dir: str | None) -> dict[str, Any]:
  """`results.json` of the run in `workdir`, training it first unless finished.
  Runs with the same pretraining (with and without the match embedding, say)
  share it: a finished one is kept in `WORKDIRS/pretrain/<hash>` and copied
  into the run's `pretrain/` folder, where training finds it."""
  if (workdir / "results.json").exists():
    results = json.loads((workdir / "results.json").read_text())
    if Config.from_dict(results["config"]).to_dict() != config.to_dict():  # new fields at defaults
      raise ValueError(f"{workdir} holds another configuration's results: remove it.")
    return results
  if not config.pretrain.pretrain_epochs:
    return train_and_evaluate(config, workdir, data_dir, progress=False)
  shared = workdir.parent / "pretrain" / config_hash(pretraining_config(config))
  if (shared / "results.json").exists() and not (workdir / pretraining.CACHE).exists():
    shutil.copytree(shared, workdir / pretraining.CACHE, ignore=shutil.ignore_patterns("*.lock"))
  results = train_and_evaluate(config, workdir, data_dir, progress=False)
  if not (shared / "results.json").exists():
    shutil.copytree(workdir / pretraining.CACHE, shared, ignore=shutil.ignore_patterns("*.lock"))
  return results


def _pretraining_record(workdir: Path, results: dict[str, Any]) -> dict[str, Any]:
  """A pretrained run's pretraining: its wall time, steps and held-out
  masked-token curve (one point per pretraining epoch); {} without one."""
  if not results.get("pretrain_wall_time_s"):
    return {}
  folder = workdir / pretraining.CACHE
  done = json.loads((folder / "results.json").read_text())
  curve = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
  return {"pretrain_wall_time_s": results["pretrain_wall_time_s"], "pretrain_steps": done["steps"],
          "pretrain_history": [{"epoch": h["epoch"], "step": h["step"],
                                "train_loss": h["train_loss"], **{
                                    f"heldout_{k}": v for k, v in h["heldout"].items()}}
                               for h in curve]}


def kept_records(path: Path, study: Study) -> list[dict]:
  """The records of an earlier `path` that still describe a variant of `study`
  (same name, preset and changes). A run this call does not redo keeps its
  record, so neither `--only` nor `--collect` drops runs trained elsewhere,
  on another machine whose workdirs are not here."""
  if not path.exists():
    return []
  return [r for r in json.loads(path.read_text())["records"]
          if r["variant"] in study.variants
          and r["preset"] == study.variants[r["variant"]].preset
          and r["changes"] == json.loads(json.dumps(study.variants[r["variant"]].changes))]


def run_study(name: str, seeds: list[int], out: Path, workdirs: Path, data_dir: str | None,
              tiny: bool = False, only: str | None = None, collect: bool = False) -> Path:
  """Trains (or reads back) every run of study `name`, or of its variants whose
  name contains `only`; with `collect`, only reads back the finished runs.
  Writes the records into its results file, beside the earlier records of
  other runs (`kept_records`), and returns the file."""
  study: Study = STUDIES[name]
  variants = {k: v for k, v in study.variants.items() if only is None or only in k}
  variants = dict(list(variants.items())[:1]) if tiny and not collect else variants
  seeds = seeds[:1] if tiny else seeds
  test = sources.load("local", data_dir)["test"]
  path = out / f"{name}.json"
  out.mkdir(parents=True, exist_ok=True)
  records = {(r["variant"], r["seed"]): r for r in kept_records(path, study)}
  order = list(study.variants)

  def write() -> None:
    document = {"study": name, "question": study.question, "note": study.note,
                "command": f"PYTHONPATH=. python experiments/run_study.py {name}"
                           f"{' --tiny' if tiny else ''}",
                "variants": list(variants) if tiny else order,
                "seeds": sorted(set(seeds) | {seed for _, seed in records}),
                "records": [records[k] for k in sorted(
                    records, key=lambda k: (order.index(k[0]), k[1]))]}
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(document, indent=1) + "\n")
    partial.replace(path)

  for variant_name, variant in variants.items():
    for seed in seeds:
      config = variant_config(variant, seed, tiny)
      workdir = workdirs / config_hash(config)
      if collect and not (workdir / "results.json").exists():
        continue
      results = run_one(config, workdir, data_dir)
      history = [json.loads(line) for line in
                 (workdir / "metrics.jsonl").read_text().splitlines()]
      records[variant_name, seed] = {
          "variant": variant_name, "seed": seed, "changes": variant.changes,
          "preset": variant.preset, "best_epoch": results["best_epoch"],
          "validation": results["validation"], "test": results["test"],
          "test_accuracy_by_words": accuracy_by_length(workdir, test),
          "history": [{"epoch": h["epoch"], "train_loss": h["train_loss"],
                       "validation_accuracy": h["validation"]["accuracy"],
                       "validation_f1": h["validation"]["f1"]} for h in history],
          "num_parameters": results["num_parameters"],
          "num_truncated": results["num_truncated"],
          # Runs trained before train_wordpiece was deterministic may differ at the cut.
          "vocab_sha256": file_hash(workdir / "tokenizer" / "vocab.txt"),
          "wall_time_s": results["wall_time_s"], "device": results["device"],
          **_pretraining_record(workdir, results),
          "host_cpus": results.get("host_cpus"),  # absent from runs made before it was
          "workdir": workdir.name}
      print(f"{name}: {variant_name}, seed {seed}: validation accuracy "
            f"{results['validation']['accuracy']:.4f} F1 {results['validation']['f1']:.4f} "
            f"({results['wall_time_s']:.0f} s)", file=sys.stderr, flush=True)
      write()
  if records:
    write()
  return path


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("study", choices=sorted(STUDIES))
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--out", type=Path,
                      help="results folder (default: experiments/results/studies, "
                           "or experiments/results/studies_tiny with --tiny)")
  parser.add_argument("--workdirs", type=Path, default=Path("experiments/workdirs"),
                      help="one workdir per distinct config (default: %(default)s)")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--only", metavar="TEXT",
                      help="run only the variants whose name contains TEXT")
  parser.add_argument("--collect", action="store_true",
                      help="train nothing: write the results file from the finished runs")
  parser.add_argument("--tiny", action="store_true",
                      help="first variant, tiny model, one epoch, one seed")
  args = parser.parse_args()
  out = args.out or Path(f"experiments/results/studies{'_tiny' if args.tiny else ''}")
  try:
    print(run_study(args.study, args.seeds, out, args.workdirs, args.data_dir, args.tiny,
                    args.only, args.collect))
  except (DataError, ValueError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  main()
