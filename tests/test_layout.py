"""The package's layout: every module sits in a layer of the import contract
(pyproject.toml, checked by `lint-imports`), and no two modules import each
other, directly or round a longer cycle, function-level imports included;
and the commands start without transformers and torch."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph():
  return grimp.build_graph("flax_mrpc", cache_dir=None)


def _layers() -> list[set[str]]:
  config = tomllib.loads((ROOT / "pyproject.toml").read_text())
  (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
  return [{name.strip() for name in layer.split("|")} for layer in contract["layers"]]


def _cycle(graph) -> list[str] | None:
  """One import cycle among the modules of `graph`, or None."""
  state: dict[str, str] = {}  # module -> "open" while on the path, "done" after

  def visit(module: str, path: list[str]) -> list[str] | None:
    state[module] = "open"
    for imported in sorted(graph.find_modules_directly_imported_by(module)):
      if state.get(imported) == "open":  # on the path: the path closes a cycle
        return path[path.index(imported):] + [imported]
      if imported not in state and (found := visit(imported, path + [imported])):
        return found
    state[module] = "done"
    return None

  for module in sorted(graph.modules):
    if module not in state and (found := visit(module, [module])):
      return found
  return None


def test_no_module_imports_itself_round_a_cycle(graph):
  assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
  graph = grimp.build_graph("flax_mrpc", cache_dir=None)
  graph.add_import(importer="flax_mrpc.config", imported="flax_mrpc.modules")
  assert _cycle(graph) in (["flax_mrpc.config", "flax_mrpc.modules", "flax_mrpc.config"],
                           ["flax_mrpc.modules", "flax_mrpc.config", "flax_mrpc.modules"])


def test_every_module_is_in_a_layer_of_the_contract():
  layered = set().union(*_layers())
  top_level = {f"flax_mrpc.{path.stem if path.is_file() else path.name}"
               for path in (ROOT / "flax_mrpc").iterdir()
               if (path.suffix == ".py" and path.stem != "__init__")
               or (path / "__init__.py").is_file()}
  assert top_level == layered


def test_the_commands_are_the_top_layer():
  assert _layers()[0] == {f"flax_mrpc.{name}"
                          for name in ("train", "pretrain", "predict", "evaluate", "export")}


def test_the_commands_import_neither_transformers_nor_torch():
  """transformers (whose AutoTokenizer imports torch when torch is installed)
  is imported where a tokenizer is built: a cached run, a refused flag and
  --help start without those seconds."""
  commands = ", ".join(sorted(_layers()[0]))
  code = f"import sys, {commands}; print(sorted({{'transformers', 'torch'}} & set(sys.modules)))"
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == "[]"
