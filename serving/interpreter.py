"""Can this interpreter run PyTriton's Triton server? Checked before anything starts.

PyTriton runs the model callable in this process and a Triton Python-backend stub in the
server; the stub links `libpython3.X.so.1.0` as the dynamic loader finds it (Debian's
`/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0`, 3.11.2, here) and runs *this* interpreter's
standard library on it. When the two are different builds, the stub fails inside Triton with
errors such as `'_thread.RLock' object has no attribute '_recursion_count'` (pyenv's 3.11.7
standard library on Debian's 3.11.2 libpython). So the libpython the stub would load is
resolved with `ldd` and its version asked with `Py_GetVersion()`, and a mismatch is a
UserError naming the fix. `python -m serving.interpreter` prints the check (`make setup SERVE=1`).
"""

from __future__ import annotations

import importlib.util
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from mirnet_deploy.errors import UserError

SERVE_VENV = ".venv-serve"
SETUP_HINT = (f"`make setup SERVE=1` builds the serving venv {SERVE_VENV} from Debian's Python "
              f"(/usr/bin/python3.11); then run `{SERVE_VENV}/bin/mirnet serve ...`")

#: Prints the version of the libpython at argv[1]: only Py_GetVersion() is called, nothing is initialized.
_VERSION_PROBE = ("import ctypes, sys; f = ctypes.PyDLL(sys.argv[1]).Py_GetVersion; "
                  "f.restype = ctypes.c_char_p; print(f().decode().split()[0])")


@dataclass(frozen=True)
class StubPython:
    """The libpython the Python-backend stub loads, and the interpreter that would serve."""

    stub: Path
    libpython: Path | None  # None: the loader finds none (the stub cannot start at all)
    libpython_version: str | None
    interpreter_version: str

    @property
    def matches(self) -> bool:
        return self.libpython_version == self.interpreter_version


def pytriton_root() -> Path:
    """The installed `pytriton` package folder, found without importing it (it needs numpy < 2)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"`mirnet serve` needs PyTriton (nvidia-pytriton), which this Python "
                        f"({sys.executable}) does not have: {SETUP_HINT}.")
    return Path(next(iter(spec.submodule_search_locations)))


def stub_path(root: Path, version: tuple[int, int] = sys.version_info[:2]) -> Path:
    """PyTriton's stub for this Python minor version (what `pytriton.triton` copies into the server)."""
    stub = root / "tritonserver" / "python_backend_stubs" / f"{version[0]}.{version[1]}" / \
        "triton_python_backend_stub"
    if not stub.is_file():
        raise UserError(f"PyTriton at {root} has no Python-backend stub for Python {version[0]}.{version[1]} "
                        f"({stub}): use a Python it ships stubs for (3.8-3.13).")
    return stub


def stub_libpython(stub: Path) -> Path | None:
    """The libpython the dynamic loader gives the stub, as `ldd` resolves it here."""
    ldd = shutil.which("ldd")
    if ldd is None:
        raise UserError("`ldd` (Debian package libc-bin) is needed to check which libpython PyTriton's "
                        "Python-backend stub loads.")
    listing = subprocess.run([ldd, str(stub)], capture_output=True, text=True, check=False).stdout
    match = re.search(r"libpython\S+ => (\S+)", listing)
    if match is None or match.group(1) == "not":
        return None
    return Path(match.group(1))


def libpython_version(library: Path) -> str | None:
    """`Py_GetVersion()` of a libpython, asked in a child interpreter; None when it cannot be loaded."""
    done = subprocess.run([sys.executable, "-I", "-c", _VERSION_PROBE, str(library)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def inspect_stub(root: Path) -> StubPython:
    stub = stub_path(root)
    library = stub_libpython(stub)
    version = libpython_version(library) if library else None
    return StubPython(stub, library, version, platform.python_version())


def mismatch_message(found: StubPython) -> str:
    """What went wrong and the two ways out."""
    if found.libpython is None:
        return (f"PyTriton's Python-backend stub ({found.stub}) finds no libpython on this machine, so "
                f"Triton cannot start it: install Debian's libpython{sys.version_info[0]}."
                f"{sys.version_info[1]} or {SETUP_HINT}.")
    own = Path(sysconfig.get_config_var("LIBDIR") or "") / (sysconfig.get_config_var("INSTSONAME") or "")
    workaround = (f" Or put this interpreter's own libpython first: `LD_LIBRARY_PATH={own.parent} mirnet "
                  f"serve ...`." if own.is_file() and own.resolve() != found.libpython.resolve() else "")
    return (f"This Python is {found.interpreter_version} ({sys.executable}), but PyTriton's Python-backend "
            f"stub loads {found.libpython} (Python {found.libpython_version or 'of unknown version'}) and "
            f"would run this Python's standard library on it; Triton then fails to load the model (e.g. "
            f"\"'_thread.RLock' object has no attribute '_recursion_count'\"). {SETUP_HINT}.{workaround}")


def check_serving_interpreter(root: Path | None = None) -> StubPython:
    """The stub's Python when it matches this interpreter; otherwise a UserError naming the fix."""
    found = inspect_stub(root or pytriton_root())
    if not found.matches:
        raise UserError(mismatch_message(found))
    return found


if __name__ == "__main__":
    try:
        checked = check_serving_interpreter()
    except UserError as error:
        raise SystemExit(f"Error: {error}") from None
    print(f"ok: PyTriton's stub loads {checked.libpython} (Python {checked.libpython_version}), "
          f"the same as this interpreter")
