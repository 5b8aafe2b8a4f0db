"""Sentence-pair tasks beyond MRPC: GLUE's pair tasks from their own file
layouts, the user's TSV/CSV/JSONL files, N-label and regression heads,
symmetric scoring, and each command's outputs for them."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from flax_mrpc import evaluate, export, predict, train
from flax_mrpc.config import get_preset, with_task
from flax_mrpc.data import pair_files, tasks
from flax_mrpc.data.examples import Example
from flax_mrpc.inference import load_trained
from flax_mrpc.train import train_and_evaluate

TINY = ["--preset", "tiny", "--epochs", "1", "--set", "pooler=true", "--no-progress"]

# Each GLUE task's real header and label column, as its TSV files write them.
HEADERS = {
    "qqp": ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    "rte": ["index", "sentence1", "sentence2", "label"],
    "qnli": ["index", "question", "sentence", "label"],
    "wnli": ["index", "sentence1", "sentence2", "label"],
    "mnli": ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
             "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
             "sentence2", "label1", "gold_label"],
    "stsb": ["index", "genre", "filename", "year", "old_index", "source1", "source2",
             "sentence1", "sentence2", "score"],
}


def _glue_row(task: str, header: list[str], i: int, example: Example, labelled: bool) -> str:
  config = tasks.glue_task(task)
  columns = tasks.glue_layout(config).columns
  if config.outputs == "regression":
    label = f"{(i * 0.37) % 5:.3f}"
  else:
    label = config.labels[i % len(config.labels)]
  values = {columns[0]: example.sentence1, columns[1]: example.sentence2, columns[2]: label}
  fields = [values.get(name, str(i)) for name in header if labelled or name != columns[2]]
  return "\t".join(fields)


def write_glue_task(task: str, folder: Path, splits) -> Path:
  """Small files of `task` in GLUE's layout (test files without labels)."""
  folder.mkdir(parents=True)
  examples = splits["train"]
  header = HEADERS[task]
  label = tasks.glue_layout(tasks.glue_task(task)).columns[2]
  for split, name in tasks.glue_layout(tasks.glue_task(task)).files.items():
    labelled = not split.startswith("test")
    shown = [h for h in header if labelled or h != label]
    rows = [_glue_row(task, header, i, examples[i + 40 * len(name)], labelled)
            for i in range(30)]
    (folder / name).write_text("\n".join(["\t".join(shown), *rows]) + "\n")
  return folder


@pytest.mark.parametrize("task", sorted(HEADERS))
def test_each_glue_task_trains_predicts_evaluates_exports_and_submits(task, splits, tmp_path,
                                                                      capsys):
  data = write_glue_task(task, tmp_path / "glue", splits)
  workdir = tmp_path / "run"
  assert train.main([*TINY, "--task", task, "--data-dir", str(data),
                     "--workdir", str(workdir)]) == 0
  config = tasks.glue_task(task)
  results = json.loads((workdir / "results.json").read_text())
  assert results["task"] == task and results["test"] is None  # GLUE's tests are unlabelled
  expected = {"correlation": {"pearson", "spearman"}, "accuracy": {"accuracy"},
              "accuracy_f1": {"accuracy", "f1"}}[config.metric]
  assert expected <= set(results["validation"])
  if task == "mnli":
    assert "accuracy" in results["validation_mismatched"]
    assert (workdir / "test_mismatched_predictions.tsv").is_file()
  assert len((workdir / "test_predictions.tsv").read_text().splitlines()) == 31

  capsys.readouterr()
  assert evaluate.main(["--workdir", str(workdir), "--data-dir", str(data), "--task", task]) == 0
  assert json.loads(capsys.readouterr().out)["task"] == task
  other = "qqp" if task == "rte" else "rte"
  for command, flags in ((evaluate, []), (export, ["--output", str(tmp_path / "x")]),
                         (predict, ["--pair", "a", "b"])):  # --task must be the workdir's own
    assert command.main(["--workdir", str(workdir), "--task", other, *flags]) == 2
    assert f"trained on task {task!r}, not {other!r}" in capsys.readouterr().err
  assert not (tmp_path / "x").exists()
  assert predict.main(["--workdir", str(workdir), "--pair", "A man sleeps.", "A man is asleep.",
                       "--all-probabilities", "--task", task]) == 0
  fields = capsys.readouterr().out.rstrip("\n").split("\t")
  if config.outputs == "regression":
    assert len(fields) == 3 and float(fields[0]) == pytest.approx(float(fields[0]))
  else:
    assert fields[0] in config.labels and len(fields) == 1 + len(config.labels) + 2
    assert sum(map(float, fields[1:-2])) == pytest.approx(1, abs=1e-5)
  assert predict.main(["--workdir", str(workdir), "--glue-submission",
                       "--data-dir", str(data)]) == 0
  for name in tasks.glue_layout(config).submission.values():
    lines = (workdir / name).read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 31
    value = lines[1].split("\t")[1]
    assert value in config.labels if config.labels else float(value) >= -100

  out = tmp_path / "exported"
  assert export.main(["--workdir", str(workdir), "--output", str(out), "--task", task]) == 0
  exported = json.loads((out / "config.json").read_text())
  assert exported["num_labels"] == (len(config.labels) or 1)
  assert exported["problem_type"] == ("regression" if config.outputs == "regression"
                                      else "single_label_classification")
  if config.labels:
    assert list(exported["id2label"].values()) == list(config.labels)
  _transformers_agree(out, workdir, splits["validation"][:12])


def _transformers_agree(folder: Path, workdir: Path, pairs) -> None:
  """transformers' reload of an export gives our one-order predictions within 1e-4."""
  torch = pytest.importorskip("torch", reason="pip install torch==2.13.0")
  import transformers

  model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
  trained = load_trained(workdir)
  batch = tokenizer([e.sentence1 for e in pairs], [e.sentence2 for e in pairs],
                    truncation="longest_first", max_length=trained.config.model.max_length,
                    padding=True, return_tensors="pt")
  with torch.no_grad():
    logits = model(**batch).logits
  outputs = trained.config.task.outputs
  theirs = (logits[:, 0] if outputs == "regression" else torch.softmax(logits, -1)).numpy()
  if outputs == "binary":
    theirs = theirs[:, 1]
  ours = trained.probabilities(pairs, symmetric=False)
  np.testing.assert_allclose(theirs, ours, atol=1e-4)


def _write(path: Path, rows: list[dict], header=("sentence1", "sentence2", "label")) -> Path:
  """`rows` in the file format of `path`'s extension."""
  if path.suffix == ".jsonl":
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
  elif path.suffix == ".csv":
    with open(path, "w", newline="") as f:
      writer = csv.DictWriter(f, header)
      writer.writeheader()
      writer.writerows(rows)
  else:
    path.write_text("\n".join(["\t".join(header)] + [
        "\t".join(str(row[h]) for h in header) for row in rows]) + "\n")
  return path


def _rows(examples) -> list[dict]:
  """MRPC's examples as a user's rows; its one U+0012 (an apostrophe, kept in
  MRPC's own files, a control character in anyone else's) dropped, as the
  tokenizer's normalizer drops it anyway."""
  return [{"sentence1": e.sentence1.replace("\x12", ""),
           "sentence2": e.sentence2.replace("\x12", ""), "label": e.label} for e in examples]


def test_mrpc_as_the_user_s_own_csv_gives_the_same_metrics(mrpc_dir, splits, tmp_path):
  config = get_preset("tiny").replace(epochs=1, train_fraction=0.1)
  ours = train_and_evaluate(config, tmp_path / "mrpc", mrpc_dir, progress=False)
  files = {name: _write(tmp_path / f"{name}.csv", _rows(splits[name]))
           for name in ("train", "validation", "test")}
  task = tasks.files_task(files["train"], files["validation"], files["test"], symmetric=True)
  assert task.labels == ("0", "1") and task.metric == "accuracy_f1"
  theirs = train_and_evaluate(with_task(config, task), tmp_path / "files", progress=False)
  for split in ("validation", "test"):
    for name, value in ours[split].items():
      assert theirs[split][name] == pytest.approx(value, abs=1e-6), (split, name)


def _rule_examples(n: int, seed: int, regression: bool) -> list[dict]:
  """Pairs whose label follows from the pair: how many of sentence1's four
  words sentence2 repeats (0, 2 or 4 classes: "none", "half", "all"), or for
  regression that count itself."""
  rng = np.random.default_rng(seed)
  words = [f"w{i}" for i in range(60)]
  rows = []
  for i in range(n):
    first = list(rng.choice(words, 4, replace=False))
    kept = [0, 2, 4][i % 3]
    others = [w for w in words if w not in first]
    second = first[:kept] + list(rng.choice(others, 4 - kept, replace=False))
    rng.shuffle(second)
    label = float(kept) if regression else ["none", "half", "all"][i % 3]
    rows.append({"sentence1": " ".join(first), "sentence2": " ".join(second), "label": label})
  return rows


@pytest.mark.parametrize("regression", [False, True], ids=["3 labels", "regression"])
def test_a_rule_is_learned_well_above_chance(regression, tmp_path):
  files = [_write(tmp_path / f"{name}.jsonl", _rule_examples(n, seed, regression))
           for name, n, seed in (("train", 900, 0), ("validation", 150, 1))]
  task = tasks.files_task(*files, regression=regression, symmetric=True)
  config = with_task(get_preset("tiny"), task).replace(
      epochs=12, batch_size=32, learning_rate=3e-3, vocab_size=200, match_embedding=True,
      dropout=0.0, attention_dropout=0.0)
  results = train_and_evaluate(config, tmp_path / "run", progress=False)
  if regression:
    assert results["validation"]["pearson"] > 0.8, results["validation"]
  else:
    assert task.labels == ("all", "half", "none")
    assert results["validation"]["accuracy"] > 0.7, results["validation"]  # chance: 1/3


def test_symmetric_tasks_score_both_orders_and_the_others_one(mrpc_dir, splits, tmp_path):
  config = get_preset("tiny").replace(epochs=1, train_fraction=0.05)
  train_and_evaluate(config, tmp_path / "mrpc", mrpc_dir, progress=False)
  trained = load_trained(tmp_path / "mrpc")
  pairs = splits["test"][:40]
  swapped = [Example(e.sentence2, e.sentence1, e.label, e.idx) for e in pairs]
  np.testing.assert_array_equal(trained.probabilities(pairs), trained.probabilities(swapped))
  one_order = trained.probabilities(pairs, symmetric=False)
  assert np.abs(one_order - trained.probabilities(swapped, symmetric=False)).max() > 0
  for name in ("rte", "mnli"):
    task = tasks.glue_task(name)
    assert not with_task(config, task).symmetric_scoring


OWN_FILES = {
    "train.tsv": "\ufeffid\tsentence1\tsentence2\tlabel\r\n1\tA b.\tC d.\tyes\r\n\r\n"
                 "2\tE \"f\".\tG h.\tno\r\n3\tI j.\tK l.\tmaybe\r\n",
    "train.csv": 'sentence1,sentence2,label\n"A, b.","C, d.",yes\n\nE f.,"G ""h"".",no\n'
                 'I j.,K l.,"may,be"\n',
    "train.jsonl": '{"sentence1": "A b.", "sentence2": "C d.", "label": 1}\n\n'
                   '{"sentence1": "E f.", "sentence2": "G h.", "label": 0.5}\n',
    "test.tsv": "sentence1\tsentence2\nA b.\tC d.\n",
    "test.csv": "sentence1,sentence2\nA b.,C d.\n",
}


@pytest.mark.parametrize("name", sorted(OWN_FILES))
def test_the_label_column_alone_gives_the_labels_of_the_checked_read(name, tmp_path):
  path = tmp_path / name
  path.write_bytes(OWN_FILES[name].encode())
  columns = ("sentence1", "sentence2", "label")
  expected = {row.label for row in pair_files.read_rows(path, columns)}
  assert pair_files.labels(path, columns) == expected
  assert len(expected) == (1 if name.startswith("test") else 2 if name.endswith("jsonl") else 3)


BAD_FILES = {
    "a missing column": ("train.tsv", "sentence1\tlabel\nA b.\t1\n", "no column 'sentence2'"),
    "an empty sentence": ("train.csv", "sentence1,sentence2,label\nA b.,,1\nC d.,E f.,0\n",
                          "train.csv:2: the sentence is empty"),
    "an unparsable score": ("train.jsonl",
                            '{"sentence1": "A b.", "sentence2": "C d.", "label": "high"}\n',
                            "train.jsonl:1: the label 'high' is not a number"),
    "a label seen only in validation": ("validation.tsv",
                                        "sentence1\tsentence2\tlabel\nA b.\tC d.\tmaybe\n",
                                        "validation.tsv:2: the label 'maybe' is not one of"),
    "one class": ("train.tsv", "sentence1\tsentence2\tlabel\nA b.\tC d.\t1\nE f.\tG h.\t1\n",
                  "every pair has the label '1'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_own_data_file_is_one_error_line(case, tmp_path, capsys):
  name, text, message = BAD_FILES[case]
  good = "sentence1\tsentence2\tlabel\nA b.\tC d.\t1\nE f.\tG h.\t0\n"
  (tmp_path / "train.tsv").write_text(good)
  (tmp_path / "validation.tsv").write_text(good)
  (tmp_path / name).write_text(text)
  regression = case == "an unparsable score"
  train_file = tmp_path / (name if name.startswith("train") else "train.tsv")
  args = [*TINY, "--train-file", str(train_file), "--validation-file",
          str(tmp_path / "validation.tsv"), "--workdir", str(tmp_path / "run")]
  assert train.main(args + (["--regression"] if regression else [])) == 2
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_hugging_face_glue_gives_the_glue_files_examples(splits, tmp_path, monkeypatch):
  """`--data-source hf` reads `nyu-mll/glue` (here a stand-in built from the
  same pairs: the hub is offline) into the examples the GLUE folder gives."""
  datasets = pytest.importorskip("datasets", reason="pip install 'flax_mrpc[hf]'")
  task = tasks.glue_task("mnli")
  folder = write_glue_task("mnli", tmp_path / "glue", splits)
  local = tasks.load(task, "local", folder)
  hub_names = {"validation": "validation_matched", "test": "test_matched"}
  tables = {}
  for split, examples in local.items():
    shuffled = examples[::-1]  # the hub's rows come back in idx order whatever their order
    tables[hub_names.get(split, split)] = datasets.Dataset.from_dict({
        "premise": [e.sentence1 for e in shuffled], "hypothesis": [e.sentence2 for e in shuffled],
        "label": [e.label for e in shuffled], "idx": [e.idx for e in shuffled]})
  requested = []
  monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: requested.append(args)
                      or datasets.DatasetDict(tables))
  assert tasks.load(task, "hf") == local
  assert requested == [("nyu-mll/glue", "mnli")]
