"""scripts/find-python: the interpreter .venv is made with, the fastest found unless
PYTHON names one (real interpreters, one of them slowed by a trace hook)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "find-python"
THIS = os.path.realpath(sys.executable)


def find(path: str, python: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/")}
    if python is not None:
        env["PYTHON"] = python
    return subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def slow_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of this interpreter that calls a trace hook on every line (several times
    slower at the piece find-python times)."""
    root = tmp_path_factory.mktemp("slow")
    subprocess.run(
        [sys.executable, "-m", "venv", "--copies", "--without-pip", str(root / "venv")],
        check=True,
        timeout=60,
    )
    python = root / "venv" / "bin" / "python3"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Traced line by line from start-up: a .pth line imports it (a sitecustomize.py
    # would be shadowed by a distribution's own, as Debian's is).
    Path(purelib, "slowdown.py").write_text(
        "import sys\n\n\ndef trace(frame, event, arg):\n    sum(range(50))\n    return trace\n\n\n"
        "sys.settrace(trace)\n"
    )
    Path(purelib, "slowdown.pth").write_text("import slowdown\n")
    return os.path.realpath(python)


def shims(tmp_path: Path, **targets: str) -> str:
    """A PATH whose first folder holds `name -> interpreter` links; the system's after."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, target in targets.items():
        (folder / name.replace("_", ".")).symlink_to(target)
    return f"{folder}:/usr/bin:/bin"


def test_the_slower_of_two_interpreters_is_not_chosen(tmp_path: Path, slow_python: str) -> None:
    assert slow_python != THIS
    path = shims(tmp_path, python3_13=slow_python, python3_12=THIS)
    found = find(path)
    assert found.returncode == 0, found.stderr
    chosen = found.stdout.strip()
    assert chosen != slow_python
    # Whichever won (this one, or the system's own where it is faster) is a Python >= 3.11.
    version = subprocess.run(
        [chosen, "-c", "import sys; print(sys.version_info >= (3, 11))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == "True"


def test_python_named_in_the_environment_is_taken_as_it_is(
    tmp_path: Path, slow_python: str
) -> None:
    path = shims(tmp_path, python3_13=THIS)
    found = find(path, python=slow_python)
    assert (found.returncode, found.stdout.strip()) == (0, slow_python)


def test_no_python_found_is_exit_1(tmp_path: Path) -> None:
    missing = find(shims(tmp_path), python=str(tmp_path / "nothing-here"))
    assert (missing.returncode, missing.stdout) == (1, "")


def timed_ms(python: str) -> float:
    """What the piece find-python times prints when `python` runs it."""
    piece = SCRIPT.read_text().split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    ran = subprocess.run(
        [python, "-c", piece], capture_output=True, text=True, check=True, timeout=60
    )
    return float(ran.stdout)


def test_the_timed_piece_runs_on_this_interpreter() -> None:
    """The bootstrap compares what this prints; a broken piece would choose at random."""
    assert timed_ms(sys.executable) > 0


def test_the_slowed_copy_is_slower(slow_python: str) -> None:
    """What the first test relies on: the hook makes the timed piece slower."""
    assert timed_ms(slow_python) > 3 * timed_ms(THIS)
