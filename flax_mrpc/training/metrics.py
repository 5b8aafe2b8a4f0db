"""Each task's metrics (GLUE's own) and the score that picks the best epoch:
binary classification metrics of the positive (paraphrase) class, accuracy
over N classes, Pearson and Spearman correlations of regression scores."""

from __future__ import annotations

import numpy as np

from flax_mrpc.config import TaskConfig


def classification_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
  """Accuracy, F1, precision and recall of [n] 0/1 predictions against [n]
  0/1 labels, plus the confusion counts. An undefined ratio (no predicted or
  no actual positives) is 0.0."""
  labels = np.asarray(labels).astype(bool)
  predictions = np.asarray(predictions).astype(bool)
  tp = int(np.sum(labels & predictions))
  fp = int(np.sum(~labels & predictions))
  fn = int(np.sum(labels & ~predictions))
  tn = int(np.sum(~labels & ~predictions))
  precision = tp / (tp + fp) if tp + fp else 0.0
  recall = tp / (tp + fn) if tp + fn else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {
      "accuracy": (tp + tn) / max(len(labels), 1),
      "f1": f1,
      "precision": precision,
      "recall": recall,
      "tp": tp, "fp": fp, "fn": fn, "tn": tn,
  }


def at_threshold(labels: np.ndarray, probabilities: np.ndarray,
                 threshold: float = 0.5) -> dict[str, float]:
  """`classification_metrics` of [n] probabilities, predicting 1 at or above `threshold`."""
  return classification_metrics(labels, np.asarray(probabilities) >= threshold)


def mrpc_score(metrics: dict[str, float]) -> float:
  """GLUE's MRPC score, (accuracy + F1) / 2: the validation score that picks the best epoch."""
  return (metrics["accuracy"] + metrics["f1"]) / 2


def correlations(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
  """Pearson's and Spearman's correlation of [n] scores with [n] gold scores
  (0.0 where undefined: constant scores)."""
  labels, scores = np.asarray(labels, np.float64), np.asarray(scores, np.float64)
  if np.ptp(scores) == 0 or np.ptp(labels) == 0:
    return {"pearson": 0.0, "spearman": 0.0}
  return {"pearson": float(np.corrcoef(labels, scores)[0, 1]),
          "spearman": float(np.corrcoef(_ranks(labels), _ranks(scores))[0, 1])}


def _ranks(values: np.ndarray) -> np.ndarray:
  """[n] ranks of [n] values, ties sharing their mean rank (Spearman's)."""
  ranks = np.empty(len(values))
  ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
  _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
  return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def task_metrics(task: TaskConfig, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
  """The metrics of `task` for [n] labels and what `steps.eval_step` predicts:
  [n] probabilities of the positive class (`at_threshold` 0.5), [n, N]
  class probabilities (accuracy of the most probable) or [n] scores
  (`correlations`)."""
  if task.outputs == "binary":
    return at_threshold(labels, predictions)
  if task.outputs == "classes":
    return {"accuracy": float(np.mean(np.argmax(predictions, axis=-1) == np.asarray(labels)))}
  return correlations(labels, predictions)


def selection_score(task: TaskConfig, metrics: dict[str, float]) -> float:
  """GLUE's score of the task: the number the best epoch maximises."""
  if task.metric == "accuracy_f1":
    return mrpc_score(metrics)
  if task.metric == "correlation":
    return (metrics["pearson"] + metrics["spearman"]) / 2
  return metrics["accuracy"]
