"""A command's output files are one unit: after `--out DIR` there are all of them, whole, or none new.

`write(out, known, fill)` has `fill(folder)` write every file into a hidden temporary folder
beside DIR (same parent, so on the same file system: `.DIR-XXXXXXXX.partial`), then puts them in
place:

  DIR absent, or an empty folder: the temporary folder is renamed to DIR (one rename: the files
  appear together);
  DIR holds files already: each new file replaces its namesake (os.replace: atomic per file), and
  earlier outputs of the same command that this run did not write (the names `known` matches, e.g.
  a batches.csv or a plot of a key no longer swept) are removed, so DIR never mixes two runs;
  anything else in DIR is left alone. SIGINT and SIGTERM are held off while the files move, so an
  interruption cannot fall between two of them (it takes effect once they are in place).

A failed write or an interruption before that removes the temporary folder (and any parent
folders it had to create) and leaves DIR as it was. Only an uncatchable kill (SIGKILL, power
loss) can leave a `.DIR-*.partial` folder behind; it is safe to delete.

Plain standard library (tempfile, os.replace, signal.pthread_sigmask): no well-kept library does
"stage a set of files and swap them in" for folders that may hold other files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

PARTIAL = ".partial"  # the temporary folder's suffix


@contextlib.contextmanager
def file_in_place(path: Path):
    """One file written whole or not at all: the block writes the temporary path yielded (beside
    `path`, with its suffix, so writers that read the format from it still can), which then replaces
    `path`; if the block fails, the temporary file is removed and `path` left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write(out: Path, known: Iterable[str], fill: Callable[[Path], list[Path]]) -> list[Path]:
    """Run fill(temporary folder) and put what it wrote into `out` (rules above); the paths in `out`.
    `known`: glob patterns of every file this command may write (runs.csv, plot-*.png)."""
    out = Path(out)
    created = _make_parents(out.parent)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-", suffix=PARTIAL, dir=out.parent))
    try:
        names = [Path(p).name for p in fill(stage)]
        with _signals_held():
            _commit(stage, out, names, known)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in reversed(created):  # innermost first; only those this call made, and only if empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return [out / name for name in names]


def _commit(stage: Path, out: Path, names: list[str], known: Iterable[str]) -> None:
    if not out.is_symlink() and (not out.exists() or (out.is_dir() and not any(out.iterdir()))):
        os.chmod(stage, 0o777 & ~_umask())  # as mkdir would have made it (mkdtemp's is private to its owner)
        os.replace(stage, out)  # onto nothing or an empty folder: one rename
        return
    for name in names:
        os.replace(stage / name, out / name)
    fresh = set(names)
    for pattern in known:
        for old in out.glob(pattern):
            if old.name not in fresh and old.is_file():
                old.unlink()
    stage.rmdir()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it made (outermost first)."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing.append(p)
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait until the block is done (where the platform can hold them)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
