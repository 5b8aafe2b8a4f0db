"""Binary classification metrics of the positive (paraphrase) class, and the
score that picks the best epoch."""

from __future__ import annotations

import numpy as np


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
