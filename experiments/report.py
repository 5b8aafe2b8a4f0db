"""Writes experiments/RESULTS.md and its figures from the studies' results files.

    PYTHONPATH=. python experiments/report.py

Reads `RESULTS/data.json` (`data_stats.py`) and `RESULTS/<study>.json`
(`run_study.py`), and writes `OUT` (default experiments/RESULTS.md) with PNG
figures in `FIGURES`. Every number comes from those files: mean ± sample
standard deviation over the seeds run. Within a study, the variant with the
best mean validation MRPC score, (accuracy + F1) / 2, is marked; test metrics
are reported, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from flax_mrpc.training.metrics import mrpc_score  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from studies import STUDIES, USUAL_RECIPE  # noqa: E402

MAX_LENGTHS = (32, 64, 128)
MIN_SEEDS = 3  # a variant competes for the best runs overall only with this many seeds


def mean_std(values: list[float]) -> str:
  if len(values) < 2:
    return f"{values[0]:.4f}"
  return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def mean_validation_score(records: list[dict]) -> float:
  """Mean over `records` of the validation MRPC score, (accuracy + F1) / 2."""
  return statistics.mean(mrpc_score(r["validation"]) for r in records)


def by_variant(document: dict[str, Any]) -> dict[str, list[dict]]:
  """{variant: its records}, in the study's order, for the variants run."""
  groups = {name: [] for name in document["variants"]}
  for record in document["records"]:
    groups[record["variant"]].append(record)
  return {name: records for name, records in groups.items() if records}


def best_variant(groups: dict[str, list[dict]]) -> str | None:
  """The variant with the best mean validation score among those run with at
  least MIN_SEEDS seeds; None when fewer than two variants qualify."""
  eligible = [v for v, records in groups.items() if len(records) >= MIN_SEEDS]
  if len(eligible) < 2:
    return None
  return max(eligible, key=lambda v: mean_validation_score(groups[v]))


def _save(fig, path: Path) -> Path:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def image(alt: str, path: Path, markdown_dir: Path) -> str:
  return f"![{alt}]({os.path.relpath(path, markdown_dir)})"


def data_section(stats: dict, figures: Path, markdown_dir: Path) -> list[str]:
  splits = stats["splits"]
  fig, ax = plt.subplots(figsize=(5.5, 3.5))
  names = list(splits)
  for offset, label in ((-0.2, "paraphrase"), (0.2, "not paraphrase")):
    counts = [splits[n]["labels"][label] for n in names]
    bars = ax.bar([i + offset for i in range(len(names))], counts, width=0.4, label=label)
    ax.bar_label(bars, fontsize=8)
  ax.set_xticks(range(len(names)), names)
  ax.set_ylabel("pairs")
  ax.set_title("MRPC labels per split")
  ax.legend()
  labels_png = _save(fig, figures / "data_labels.png")

  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  for key, ax, title, width in (("sentence_tokens", axes[0], "sentence length", 2),
                                ("pair_tokens", axes[1],
                                 "pair length ([CLS] s1 [SEP] s2 [SEP])", 4)):
    for name in names:
      hist = {int(k): v for k, v in splits[name][key].items()}
      ax.hist(list(hist), bins=range(0, max(hist) + width, width), weights=list(hist.values()),
              density=True, histtype="step", lw=1.4, label=name)
    ax.set_xlabel(f"tokens ({width}-token bins)")
    ax.set_ylabel("share of " + ("sentences" if key == "sentence_tokens" else "pairs")
                  + " per token")
    ax.set_title(title)
  train_cut = splits["train"]["truncated_share"]
  axes[1].set_xlim(0, max(MAX_LENGTHS) + 24)
  for m in MAX_LENGTHS:
    axes[1].axvline(m, color="grey", ls="--", lw=0.8)
    axes[1].text(m + 1, axes[1].get_ylim()[1] * 0.92, f"{m}: cuts\n{train_cut[str(m)]:.0%} of train",
                 color="dimgrey", fontsize=8)
  axes[0].legend()
  lengths_png = _save(fig, figures / "data_lengths.png")

  lines = ["## Data (seed section 2)", "",
           f"Tokens: {stats['tokenizer']}. Command: `PYTHONPATH=. python experiments/"
           "data_stats.py`.", "",
           "| split | pairs | paraphrase | not paraphrase | truncated at 32 / 64 / 128 tokens |",
           "| --- | --- | --- | --- | --- |"]
  for name, split in splits.items():
    n = sum(split["labels"].values())
    shares = " / ".join(f"{split['truncated_share'][str(m)]:.1%}" for m in MAX_LENGTHS)
    lines.append(f"| {name} | {n} | {split['labels']['paraphrase']} "
                 f"({split['labels']['paraphrase'] / n:.1%}) | {split['labels']['not paraphrase']}"
                 f" | {shares} |")
  lines += ["", image("labels per split", labels_png, markdown_dir),
            image("length distributions", lengths_png, markdown_dir), ""]
  return lines


def study_table(groups: dict[str, list[dict]], best: str | None) -> list[str]:
  lines = ["| variant | seeds | val accuracy | val F1 | test accuracy | test F1 | best epochs "
           "| test TP / FP / FN / TN (mean) | parameters | time per run |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for name, records in groups.items():
    cells = [mean_std([r[split][metric] for r in records])
             for split in ("validation", "test") for metric in ("accuracy", "f1")]
    confusion = " / ".join(f"{statistics.mean(r['test'][k] for r in records):.0f}"
                           for k in ("tp", "fp", "fn", "tn"))
    label = f"**{name}** (best on validation)" if name == best else name
    lines.append(
        f"| {label} | {len(records)} | {' | '.join(cells)} | "
        f"{', '.join(str(r['best_epoch']) for r in records)} | {confusion} | "
        f"{records[0]['num_parameters']:,} | "
        f"{statistics.mean(r['wall_time_s'] for r in records):.0f} s |")
  return lines


def learning_curves(name: str, variant: str, records: list[dict], figures: Path) -> Path:
  """Train loss, validation accuracy and F1 per epoch, one colour per seed;
  a dotted line marks the epoch each run kept."""
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  panels = (("train_loss", "train loss (BCE)"), ("validation_accuracy", "validation accuracy"),
            ("validation_f1", "validation F1"))
  for i, r in enumerate(records):
    epochs = [h["epoch"] for h in r["history"]]
    for ax, (key, _) in zip(axes, panels):
      ax.plot(epochs, [h[key] for h in r["history"]], marker="o", color=f"C{i}",
              label=f"seed {r['seed']}")
      if key != "train_loss":
        ax.axvline(r["best_epoch"], color=f"C{i}", lw=0.8, ls=":")
  for ax, (_, label) in zip(axes, panels):
    ax.set(xlabel="epoch", ylabel=label)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  axes[0].legend(fontsize=8)
  fig.suptitle(f"{name}: {variant} (dotted: the epoch kept, chosen on validation)", fontsize=10)
  return _save(fig, figures / f"{name}_learning_curves.png")


def length_figure(groups: dict[str, list[dict]], figures: Path, name: str) -> Path:
  fig, ax = plt.subplots(figsize=(6, 3.5))
  buckets = list(next(iter(groups.values()))[0]["test_accuracy_by_words"])
  for variant, records in groups.items():
    means = [statistics.mean(r["test_accuracy_by_words"][b]["accuracy"] for r in records)
             for b in buckets]
    ax.plot(range(len(buckets)), means, marker="o", label=variant)
  pairs = next(iter(groups.values()))[0]["test_accuracy_by_words"]
  ax.plot(range(len(buckets)), [pairs[b]["paraphrase_share"] for b in buckets], color="grey",
          ls="--", label='always "paraphrase"')
  ax.set_xticks(range(len(buckets)), [f"{b}\n({pairs[b]['pairs']} pairs)" for b in buckets])
  ax.set(xlabel="words in the pair (test split)", ylabel="test accuracy (seed mean)",
         title="Accuracy by pair length")
  ax.legend(fontsize=8)
  return _save(fig, figures / f"{name}_by_length.png")


def size_figure(groups: dict[str, list[dict]], figures: Path, name: str) -> Path:
  """Validation accuracy and wall time against parameters, one line per depth,
  each point labelled with its width."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  by_depth: dict[int, list[tuple]] = {}
  for variant, records in groups.items():
    changes = STUDIES[name].variants[variant].changes
    accuracy = [r["validation"]["accuracy"] for r in records]
    by_depth.setdefault(changes["num_layers"], []).append((
        records[0]["num_parameters"] / 1e6, changes["d_model"], statistics.mean(accuracy),
        statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
        statistics.mean(r["wall_time_s"] for r in records), len(records)))
  for i, (depth, points) in enumerate(sorted(by_depth.items())):
    points.sort()
    label = f"{depth} layer{'s' * (depth > 1)}"
    axes[0].errorbar([p[0] for p in points], [p[2] for p in points], yerr=[p[3] for p in points],
                     marker="o", capsize=3, color=f"C{i}", label=label)
    axes[1].plot([p[0] for p in points], [p[4] for p in points], marker="o", color=f"C{i}",
                 label=label)
    for params, width, accuracy, _, seconds, seeds in points:
      axes[0].annotate(f" {width}" + (f" ({seeds} seeds)" if seeds > 1 else ""),
                       (params, accuracy), fontsize=7)
      axes[1].annotate(f" {width}", (params, seconds), fontsize=7)
  axes[0].set(xlabel="parameters (millions); labels: width", ylabel="validation accuracy",
              title="Size vs accuracy (mean ± std where several seeds)")
  axes[1].set(xlabel="parameters (millions); labels: width", ylabel="wall time per run (s)",
              title="Size vs train time")
  axes[0].legend(fontsize=8)
  return _save(fig, figures / f"{name}.png")


def fraction_figure(groups: dict[str, list[dict]], fractions: dict[str, float], figures: Path,
                    name: str) -> Path:
  fig, ax = plt.subplots(figsize=(6, 3.5))
  for family in ("scratch", "all-MiniLM-L6-v2"):
    points = sorted((fraction, [r["test"]["accuracy"] for r in groups[v]])
                    for v, fraction in fractions.items() if v.startswith(family))
    if points:
      ax.errorbar([p[0] for p in points], [statistics.mean(p[1]) for p in points],
                  yerr=[statistics.stdev(p[1]) if len(p[1]) > 1 else 0 for p in points],
                  marker="o", capsize=3, label=family)
      for fraction, accuracies in points:
        if len(accuracies) < MIN_SEEDS:
          ax.annotate(f" {len(accuracies)} seed{'s' * (len(accuracies) > 1)}",
                      (fraction, statistics.mean(accuracies)), fontsize=8)
  test = next(iter(groups.values()))[0]["test"]
  majority = (test["tp"] + test["fn"]) / sum(test[k] for k in ("tp", "fp", "fn", "tn"))
  ax.axhline(majority, color="grey", ls="--", lw=0.8, label='always "paraphrase"')
  ax.set_xlim(0, 1.05)
  ax.set(xlabel="share of the 3668 train pairs", ylabel="test accuracy (mean ± std)",
         title="Learning curve: training pairs")
  ax.legend()
  return _save(fig, figures / f"{name}_fractions.png")


def pretraining_figure(groups: dict[str, list[dict]], figures: Path, name: str) -> Path:
  """Left: the held-out masked-token accuracy along each pretraining (mean
  over seeds). Right: mean validation accuracy and F1 of the variants that
  differ from the reference only in pretraining, against pretraining steps."""
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
  for i, (variant, records) in enumerate(groups.items()):
    if "pretrain_history" in records[0]:
      history = records[0]["pretrain_history"]
      accuracy = [statistics.mean(r["pretrain_history"][j]["heldout_accuracy"] for r in records)
                  for j in range(len(history))]
      left.plot([h["step"] for h in history], accuracy, marker=".", color=f"C{i}", label=variant)
  left.set(xlabel="pretraining step", ylabel="held-out masked-token accuracy")
  if left.lines:
    left.legend(fontsize=7)
  variants = STUDIES[name].variants
  curve = sorted((records[0].get("pretrain_steps", 0), variant) for variant, records in
                 groups.items() if set(variants[variant].changes) <= {"pretrain_epochs",
                                                                     "pretrain_learning_rate"})
  for metric, marker in (("accuracy", "o"), ("f1", "s")):
    right.plot([steps for steps, _ in curve],
               [statistics.mean(r["validation"][metric] for r in groups[v]) for _, v in curve],
               marker=marker, label=f"validation {metric}")
  right.set(xlabel="pretraining steps (0: none)", ylabel="mean over seeds")
  right.legend(fontsize=8)
  fig.suptitle(f"{name}: masked-LM pretraining and what it gives fine-tuning", fontsize=10)
  return _save(fig, figures / f"{name}_steps.png")


def vocabulary_outliers(records: list[dict]) -> list[str]:
  """Runs whose learned vocabulary differs from the most common one learned
  from the same sentences (runs trained before `tokenization.train_wordpiece`
  fixed the trainer's tie-breaking drew among several)."""
  groups: dict[tuple, list[dict]] = {}
  for r in records:
    if r.get("vocab_sha256"):
      fraction = r["changes"].get("train_fraction", 1.0)
      key = (r["preset"], r["changes"].get("vocab_size"), fraction,
             r["seed"] if fraction < 1 else None)
      groups.setdefault(key, []).append(r)
  outliers = []
  for runs in groups.values():
    hashes = [r["vocab_sha256"] for r in runs]
    common = max(set(hashes), key=hashes.count)
    if hashes.count(common) > 1:
      outliers += [f"{r['variant']}, seed {r['seed']}" for r in runs
                   if r["vocab_sha256"] != common]
  return outliers


def study_section(document: dict, figures: Path, markdown_dir: Path) -> list[str]:
  name = document["study"]
  groups = by_variant(document)
  missing = [v for v in document["variants"] if v not in groups]
  missing += [v for v in STUDIES[name].variants if v not in document["variants"]]
  records = [r for rs in groups.values() for r in rs]
  devices = sorted({r["device"] + (f" ({r['host_cpus']} cores)" if r.get("host_cpus") and
                                   r["device"] == "cpu" else "") for r in records})
  hours = sum(r["wall_time_s"] for r in records) / 3600
  lines = [f"## {name}", "", f"**Question.** {document['question']}", "",
           f"Command: `{document['command']}`. Machine: {', '.join(devices)}; "
           f"{len(records)} runs, {hours:.2f} h of training in all.", ""]
  if document["note"]:
    lines += [document["note"], ""]
  best = best_variant(groups)
  lines += study_table(groups, best) + [""]
  if best is None:
    lines += [f"No variant is marked best: fewer than two have {MIN_SEEDS} seeds.", ""]
  if missing:
    lines += ["Not run yet: " + "; ".join(missing) + ".", ""]
  outliers = vocabulary_outliers(records)
  if outliers:
    lines += ["Learned a vocabulary that differs (by a token or two at the cut) from the "
              "other runs on the same sentences: " + "; ".join(outliers) + ".", ""]
  if name == "seq_length":
    lines += [image("accuracy by length", length_figure(groups, figures, name), markdown_dir)]
  if name == "model_size":
    lines += [image("size against accuracy and time", size_figure(groups, figures, name),
                    markdown_dir)]
  if name == "pretrained":
    variants = STUDIES[name].variants  # the curve: variants changing only the share of pairs
    fractions = {v: variants[v].changes.get("train_fraction", 1.0) for v in groups
                 if {k: x for k, x in variants[v].changes.items() if k != "train_fraction"}
                 in ({}, USUAL_RECIPE)}
    lines += [image("accuracy against training pairs",
                    fraction_figure(groups, fractions, figures, name), markdown_dir)]
  if name == "pretraining":
    lines += [image("pretraining curves", pretraining_figure(groups, figures, name),
                    markdown_dir)]
  shown = best or next(iter(groups))  # the reference when no variant is marked
  curves = learning_curves(name, shown, groups[shown], figures)
  lines += [image(f"learning curves of {shown}", curves, markdown_dir), ""]
  return lines


def summary(documents: list[dict]) -> list[str]:
  """The best from-scratch and pretrained variants with at least MIN_SEEDS
  runs over all studies, chosen on validation."""
  lines = ["## Best runs, chosen on validation", "",
           f"Among the variants run with at least {MIN_SEEDS} seeds.", "",
           "| kind | study: variant | seeds | val accuracy | val F1 | test accuracy | test F1 |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for kind in ("from scratch", "pretrained"):
    candidates = {(d["study"], v): rs for d in documents for v, rs in by_variant(d).items()
                  if STUDIES[d["study"]].variants[v].needs_minilm == (kind == "pretrained")
                  and len(rs) >= MIN_SEEDS}
    if not candidates:
      continue
    key = max(candidates, key=lambda k: mean_validation_score(candidates[k]))
    rs = candidates[key]
    cells = [mean_std([r[s][m] for r in rs]) for s in ("validation", "test")
             for m in ("accuracy", "f1")]
    lines.append(f"| {kind} | {key[0]}: {key[1]} | {len(rs)} | {' | '.join(cells)} |")
  return lines + [""]


def write_report(results: Path, out: Path, figures: Path) -> None:
  figures.mkdir(parents=True, exist_ok=True)
  documents = [json.loads((results / f"{name}.json").read_text()) for name in STUDIES
               if (results / f"{name}.json").exists()]
  lines = ["# Results of the studies", "",
           "Written by `PYTHONPATH=. python experiments/report.py` from the JSON files in "
           f"`{os.path.relpath(results, out.parent)}/`; the studies are defined in "
           "`experiments/studies.py`. Mean ± standard deviation over seeds; each run's "
           "epoch is chosen on validation, and so is the best variant of each study (bold; "
           f"among variants with at least {MIN_SEEDS} seeds). "
           "Machine: the device JAX reported for the runs (`studies.py` says where the "
           "recorded CPU runs were made).",
           ""]
  lines += summary(documents)
  if (results / "data.json").exists():
    lines += data_section(json.loads((results / "data.json").read_text()), figures, out.parent)
  for document in documents:
    lines += study_section(document, figures, out.parent)
  run = {d["study"] for d in documents}
  not_run = [f"{name} ({STUDIES[name].note or 'not run yet'})" for name in STUDIES
             if name not in run]
  if not_run:
    lines += ["## Not run yet", ""] + [f"- {n}" for n in not_run] + [""]
  out.write_text("\n".join(lines))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results", type=Path, default=Path("experiments/results/studies"))
  parser.add_argument("--out", type=Path, default=Path("experiments/RESULTS.md"))
  parser.add_argument("--figures", type=Path, default=Path("experiments/results/figures"))
  args = parser.parse_args()
  write_report(args.results, args.out, args.figures)
  print(args.out)


if __name__ == "__main__":
  main()
