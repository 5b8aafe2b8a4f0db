import numpy as np
import pytest

from flax_mrpc.training.metrics import classification_metrics


def test_known_confusion():
  labels = np.array([1, 1, 1, 0, 0])
  preds = np.array([1, 1, 0, 1, 0])
  m = classification_metrics(labels, preds)
  assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
  assert m["accuracy"] == pytest.approx(0.6)
  assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
  assert m["f1"] == pytest.approx(2 / 3)


def test_majority_class_on_mrpc_test_scores_the_seeds_result():
  labels = np.array([1] * 1147 + [0] * 578)
  m = classification_metrics(labels, np.ones_like(labels))
  assert round(m["accuracy"], 4) == 0.6649 and round(m["f1"], 4) == 0.7987


def test_no_predicted_positives_gives_zero_f1():
  m = classification_metrics(np.array([1, 0]), np.array([0, 0]))
  assert m["f1"] == 0.0 and m["precision"] == 0.0 and m["accuracy"] == 0.5
