"""Bad files and flags through the real CLIs: exit status 2, one `error:` line
per problem naming the file and line (or the flag), no traceback."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flax_mrpc.data import mrpc

pytestmark = pytest.mark.slow  # subprocess end-to-end runs

ROOT = Path(__file__).resolve().parents[1]


def _cli(module, *args, data_dir=None):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  if data_dir is not None:
    env["FLAX_MRPC_DATA_DIR"] = str(data_dir)
  return subprocess.run([sys.executable, "-m", f"flax_mrpc.{module}", *args], env=env,
                        capture_output=True, timeout=300)


def _refused(proc) -> list[str]:
  """The error lines of a refused command, after checking how it ended."""
  err = proc.stderr.decode()
  assert proc.returncode == 2, err
  assert "Traceback" not in err, err
  lines = err.splitlines()
  assert lines and all(line.startswith("error: ") for line in lines), err
  return lines


def _edit_lines(path: Path, edits: dict[int, bytes]) -> None:
  lines = path.read_bytes().split(b"\n")
  for number, content in edits.items():
    lines[number - 1] = content + b"\r"
  path.write_bytes(b"\n".join(lines))


def test_a_pairs_file_gets_a_line_per_problem(tmp_path):
  pairs = tmp_path / "pairs.tsv"
  pairs.write_bytes(b"sentence1\tsentence2\nA good pair.\tIt is.\n\tno first sentence\n"
                    b"   \tonly spaces before\nbad \xff byte\tx\nbell \x07 here\tok\n"
                    b"one field only\n\na\tb\tc\nfine\tagain\n")
  lines = _refused(_cli("predict", "--workdir", str(tmp_path / "none"), "--input", str(pairs)))
  assert [line.split(":")[2] for line in lines] == ["3", "4", "5", "6", "7", "9"]
  assert all(line.startswith(f"error: {pairs}:") for line in lines)
  assert "empty" in lines[0] and "only whitespace" in lines[1]
  assert "0xff" in lines[2] and "UTF-8" in lines[2]
  assert "U+0007" in lines[3]
  assert "found 1" in lines[4] and "found 3" in lines[5]


def test_pair_arguments_are_checked(tmp_path):
  lines = _refused(_cli("predict", "--workdir", str(tmp_path), "--pair", " ", "tab\x0bhere"))
  assert lines[0].startswith("error: --pair sentence 1:") and "whitespace" in lines[0]
  assert lines[1].startswith("error: --pair sentence 2:") and "U+000B" in lines[1]


def test_mrpc_files_get_a_line_per_problem(mrpc_dir, tmp_path):
  for name in (mrpc.TRAIN_FILE, mrpc.TEST_FILE, mrpc.DEV_IDS_FILE):
    shutil.copy(mrpc_dir / name, tmp_path / name)
  _edit_lines(tmp_path / mrpc.TRAIN_FILE, {
      3: b"1\t1\t2\t\tan empty first sentence", 4: b"1\t1\t2\ta NUL \x00\tb",
      5: b"0\t1\t2\tLatin-1 caf\xe9\tb", 6: b"1\t1\t2\tfour fields"})
  lines = _refused(_cli("train", "--preset", "tiny", "--workdir", str(tmp_path / "run"),
                        "--data-dir", str(tmp_path)))
  train_file = tmp_path / mrpc.TRAIN_FILE
  assert [line.removeprefix(f"error: {train_file}:").split(":")[0] for line in lines] == [
      "3", "4", "5", "6"]
  assert "U+0000" in lines[1] and "0xe9" in lines[2] and "found 4" in lines[3]


def test_a_glue_tsv_gets_a_line_per_problem(tmp_path):
  header = "\t".join(mrpc.HEADER).encode()
  (tmp_path / "train.tsv").write_bytes(header + b"\n1\t1\t2\ta\t \n0\t1\t2\tb\tc\n")
  (tmp_path / "dev.tsv").write_bytes(header + b"\n1\t1\t2\ta\tb\n")
  (tmp_path / "test.tsv").write_bytes("\t".join(mrpc.GLUE_TEST_HEADER).encode() + b"\n")
  lines = _refused(_cli("train", "--preset", "tiny", "--workdir", str(tmp_path / "run"),
                        "--data-dir", str(tmp_path)))
  assert lines == [f"error: {tmp_path / 'train.tsv'}:2: field 5: the sentence is only "
                   "whitespace; every pair needs two sentences"]


@pytest.mark.parametrize("flags, names", [
    (["--learning-rate", "nan"], ["--learning-rate", "nan"]),
    (["--learning-rate", "0"], ["--learning-rate", "0.0"]),
], ids=["nan learning rate", "zero learning rate"])
def test_bad_flags_are_refused_before_any_work(tmp_path, flags, names):
  workdir = tmp_path / "run"
  (line,) = _refused(_cli("train", "--preset", "tiny", "--workdir", str(workdir), *flags,
                          data_dir=tmp_path / "no data needed"))
  assert all(name in line for name in names), line
  assert not workdir.exists()


def test_a_workdir_that_is_a_file_or_cannot_be_created(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  for workdir, problem in ((a_file, "is a file"), (a_file / "run", "cannot be created")):
    (line,) = _refused(_cli("train", "--preset", "tiny", "--workdir", str(workdir),
                            data_dir=tmp_path))
    assert line.startswith(f"error: --workdir {workdir} {problem}"), line
