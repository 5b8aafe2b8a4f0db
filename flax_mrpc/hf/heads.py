"""A Hugging Face sequence-classification head's output layer as the task's
classifier, and back.

transformers' heads emit `num_labels` logits. A binary task here has one
logit: a 2-label head becomes the difference of its rows (label 1's minus
label 0's), so our sigmoid is its softmax[:, 1], and exports as rows
(0, logit). An N-label task takes an N-label head with its rows put in the
task's label order through config.json's `id2label`; a regression task, a
1-label head as it is. A head of another size is a `PretrainedError` (train
a fresh head with `--set fresh_head=true`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from flax_mrpc.config import TaskConfig
from flax_mrpc.hf.families import common


def label_config(task: TaskConfig) -> dict[str, Any]:
  """config.json's label fields of a model of `task`: `num_labels`,
  `id2label`/`label2id` and `problem_type`."""
  if task.outputs == "regression":
    return {"num_labels": 1, "id2label": {"0": "score"}, "label2id": {"score": 0},
            "problem_type": "regression"}
  return {"num_labels": len(task.labels),
          "id2label": {str(i): name for i, name in enumerate(task.labels)},
          "label2id": {name: i for i, name in enumerate(task.labels)},
          "problem_type": "single_label_classification"}


def _generic(name: str) -> bool:
  return re.fullmatch(r"LABEL_\d+", name) is not None


def label_order(hf: dict[str, Any], task: TaskConfig, rows: int, source: str) -> np.ndarray:
  """[rows] the head's row of each of the task's classes (identity for a
  binary or regression head, or one whose `id2label` names are generic or
  do not all name the task's labels). Raises PretrainedError when the head
  has another number of rows than the task needs."""
  needed = 2 if task.outputs == "binary" else task.num_outputs
  if rows != needed:
    kind = ("regression (one score)" if task.outputs == "regression"
            else f"{len(task.labels)} labels")
    raise common.PretrainedError(
        f"the {source} has a classification head of {rows} label(s); task {task.task!r} needs "
        f"{kind}. Start from its base model, or train a fresh head: --set fresh_head=true.")
  names = [str(hf.get("id2label", {}).get(str(i), f"LABEL_{i}")) for i in range(rows)]
  by_name = {name.lower(): i for i, name in enumerate(names)}
  if task.outputs != "classes" or all(map(_generic, names)):
    return np.arange(rows)
  if not all(label.lower() in by_name for label in task.labels):
    raise common.PretrainedError(
        f"the {source}'s head labels {names} are not the task's {list(task.labels)}; train a "
        "fresh head: --set fresh_head=true.")
  return np.array([by_name[label.lower()] for label in task.labels])


def to_ours(array: np.ndarray, task: TaskConfig, order: np.ndarray) -> np.ndarray:
  """The head's weight [labels, hidden] as our kernel [hidden, outputs], or
  its bias [labels] as ours [outputs]."""
  array = array[order]
  if task.outputs == "binary":
    array = array[1:] - array[:1]
  return array.T if array.ndim == 2 else array


def to_theirs(array: np.ndarray, task: TaskConfig) -> np.ndarray:
  """Our kernel [hidden, outputs] or bias [outputs] as the head's weight
  [labels, hidden] or bias [labels] (a binary logit as rows 0 and the logit)."""
  array = array.T if array.ndim == 2 else array
  if task.outputs == "binary":
    array = np.concatenate([np.zeros_like(array), array])
  return array
