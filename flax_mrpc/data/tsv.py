"""Tab-separated text files, read line by line with every line checked.

`rows` streams a file's lines as lists of fields, and collects one
`FILE:LINE: problem` message per bad line instead of stopping at the first:
bytes that are not UTF-8, control characters, the wrong number of fields, an
empty or whitespace-only sentence. `raise_problems` turns the collected
messages into one `DataError` (the CLIs print a line for each).

Empty lines are skipped. A UTF-8 byte order mark and CRLF line ends are
accepted, so files saved on Windows read as they are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Collection, Iterator

MAX_REPORTED = 20  # problems listed per error; the rest are counted
# Unicode's control characters (category Cc): C0, DEL and C1.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def sentence_problem(text: str, allowed_controls: Collection[str] = ()) -> str | None:
  """What is wrong with one sentence, or None: empty, whitespace only, or a
  control character (other than those in `allowed_controls`)."""
  if not text.strip():
    state = "empty" if not text else "only whitespace"
    return f"the sentence is {state}; every pair needs two sentences"
  if text.isascii() and text.isprintable():  # the common case: U+0020 to U+007E only
    return None
  if _CONTROL.search(text) is None:
    return None
  for control in _CONTROL.finditer(text):
    if control.group() not in allowed_controls:
      return (f"control character U+{ord(control.group()):04X} at column {control.start() + 1} "
              "of the sentence; remove it")
  return None


def _decode(raw: bytes, number: int) -> tuple[str | None, str | None]:
  """(text without its line end, None) or (None, the problem)."""
  if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
    raw = raw[3:]
  raw = raw.removesuffix(b"\n").removesuffix(b"\r")
  try:
    return raw.decode("utf-8"), None
  except UnicodeDecodeError as e:
    return None, (f"byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8 text; "
                  "save the file as UTF-8")


def rows(path: Path, num_fields: int, sentence_fields: Collection[int], problems: list[str],
         allowed_controls: Collection[str] = ()) -> Iterator[tuple[int, list[str]]]:
  """Yields (line number, its `num_fields` fields) for each good non-empty line
  of `path`, and appends a `path:line: ...` message to `problems` for each bad
  one. Fields at the indices `sentence_fields` must pass `sentence_problem`.
  `path` must exist."""
  with open(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      text, problem = _decode(raw, number)
      if text == "":
        continue
      if text is not None:
        fields = text.split("\t")
        if len(fields) != num_fields:
          problem = (f"expected {num_fields} fields separated by tabs, found {len(fields)}; "
                     "check the tabs of this line")
        else:
          problem = next((f"field {i + 1}: {p}" for i in sentence_fields
                          if (p := sentence_problem(fields[i], allowed_controls))), None)
      if problem:
        problems.append(f"{path}:{number}: {problem}")
      else:
        yield number, fields


def capped(problems: list[str]) -> list[str]:
  """`problems`, at most MAX_REPORTED of them, then a line counting the rest."""
  if len(problems) <= MAX_REPORTED:
    return problems
  return problems[:MAX_REPORTED] + [
      f"... and {len(problems) - MAX_REPORTED} more problems like these"]
