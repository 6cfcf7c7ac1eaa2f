"""Output files written whole or not at all, and never over anything but a regular file.

Each output is written to a temporary file created exclusively (``O_CREAT | O_EXCL`` with a
random name, so a planted file or symbolic link is never followed) in the target's own
folder, then renamed over the target. A target that exists and is not a regular file (a
folder, device such as ``/dev/null``, FIFO, socket) or is a symbolic link is refused, and
so is a target that is the same file as another input or output of the same command.
Code that can only write by path (the ledger writer, a plotting library) gets a
:class:`StagedOutput` instead: a private folder (mode 0700, random name, created
exclusively) in the target's folder, holding the file until it is renamed over the target.
Temporary files and folders still pending are removed on ``SIGTERM``/``SIGINT`` once
:func:`install_signal_cleanup` ran (the ``tao`` command does), and by every error path.
JSON outputs go through :func:`json_text`, which never writes ``NaN`` or ``Infinity``.

Errors are :class:`~tao_core.errors.InputError`, one line naming ``field`` (the option
the path came from) and the fix.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple, Union

from tao_core.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]

_pending: set[str] = set()
_pending_lock = threading.Lock()
_installed = False


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output_path(path: PathLike, field: str, *,
                      others: Iterable[Tuple[str, Optional[PathLike]]] = ()) -> Path:
    """``path`` as a Path when it may be written; ``others``: (field, path) pairs of the
    command's other inputs and outputs, none of which it may be."""
    p = Path(path)
    if str(path) == "":
        raise InputError(f"{field}: empty path; give a file path")
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise InputError(f"{field} {p}: cannot be checked ({exc.strerror}); choose another path") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise InputError(f"{field} {p}: is a symbolic link; give the path of the file itself")
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{field} {p}: is a folder; give a file path inside it")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{field} {p}: exists and is not a regular file (a device, FIFO or socket); "
                             "give the path of a regular file")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{field} {p}: folder {parent} does not exist; create it first")
    for other_field, other in others:
        if other is not None and str(other) != "" and _same_file(p, Path(other)):
            raise InputError(f"{field} {p}: is the same file as {other_field}; give each its own path")
    return p


def _remove_pending(*_: object) -> None:
    with _pending_lock:
        names = list(_pending)
        _pending.clear()
    for name in names:
        try:
            if os.path.isdir(name) and not os.path.islink(name):
                shutil.rmtree(name, ignore_errors=True)
            else:
                os.unlink(name)
        except OSError:
            pass


def install_signal_cleanup() -> None:
    """On SIGTERM and SIGINT, remove every pending temporary file, then exit as the signal
    would (status 128 + signal number; SIGINT raises KeyboardInterrupt as Python does).
    Call from the main thread of a program; libraries leave handlers alone."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return

    def on_term(signum: int, frame: object) -> None:
        _remove_pending()
        raise SystemExit(128 + signum)

    def on_int(signum: int, frame: object) -> None:
        _remove_pending()
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, on_term)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_int)
    _installed = True


class PendingOutput:
    """One output being written: a temporary file beside ``target`` until :meth:`commit`
    renames it into place, or :meth:`discard` removes it. ``mode``: the file's permission
    bits (default: what a plain ``open`` would give under the umask)."""

    def __init__(self, target: PathLike, field: str, *, mode: Optional[int] = None,
                 others: Iterable[Tuple[str, Optional[PathLike]]] = ()) -> None:
        self.target = check_output_path(target, field, others=others)
        self.field = field
        parent = self.target.parent if str(self.target.parent) else Path(".")
        try:
            fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=parent)
        except OSError as exc:
            raise InputError(f"{field} {self.target}: cannot write in folder {parent} ({exc.strerror}); "
                             "choose a writable folder") from None
        with _pending_lock:
            _pending.add(name)
        self.path = Path(name)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        self._fd: Optional[int] = fd
        self.done = False

    def write(self, data: Union[bytes, str]) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self._fd is None:
            raise ValueError("output already committed or discarded")
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self.discard()
            raise InputError(f"{self.field} {self.target}: write failed ({exc.strerror}); "
                             "free space or choose another folder") from None

    def fileno(self) -> int:
        """The temporary file's descriptor (open for reading and writing)."""
        if self._fd is None:
            raise ValueError("output already committed or discarded")
        return self._fd

    def commit(self, *, replace: bool = True, keep_open: bool = False) -> Path:
        """fsync and move the temporary file to the target; returns the target.

        ``replace=False``: only when nothing is at the target (``os.link``, which never
        replaces anything; an InputError when something is there). ``keep_open``: leave
        the file open for a writer that goes on with it; take the descriptor with
        :meth:`detach`."""
        if self._fd is None:
            raise ValueError("output already committed or discarded")
        try:
            os.fsync(self._fd)
            if not keep_open:
                os.close(self._fd)
                self._fd = None
            if replace:
                check_output_path(self.target, self.field)  # nothing else was put there meanwhile
                os.replace(self.path, self.target)
            else:
                os.link(self.path, self.target)
                os.unlink(self.path)
        except InputError:
            self.discard()
            raise
        except FileExistsError:
            self.discard()
            raise InputError(f"{self.field} {self.target}: already exists (created meanwhile); "
                             "it is never replaced: give a new path") from None
        except OSError as exc:
            self.discard()
            raise InputError(f"{self.field} {self.target}: cannot be written ({exc.strerror}); "
                             "choose another path") from None
        with _pending_lock:
            _pending.discard(str(self.path))
        self.done = True
        return self.target

    def detach(self) -> int:
        """The descriptor of a file committed with ``keep_open=True``; the caller closes it."""
        if not self.done or self._fd is None:
            raise ValueError("detach() needs commit(keep_open=True) first")
        fd, self._fd = self._fd, None
        return fd

    def discard(self) -> None:
        """Remove the temporary file (nothing is left behind)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if not self.done:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            with _pending_lock:
                _pending.discard(str(self.path))

    def __enter__(self) -> "PendingOutput":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None and not self.done:
            self.commit()
        else:
            self.discard()


class StagedOutput:
    """One output written by path by code that cannot take a file handle: :attr:`path` is
    a file in a private folder (mode 0700, random name, created exclusively) beside
    ``target``, where nothing else can plant a file or link. :meth:`commit` renames the file
    written there over the target (after the target's checks again) and removes the folder;
    :meth:`discard` removes the folder and everything in it."""

    def __init__(self, target: PathLike, field: str, *,
                 others: Iterable[Tuple[str, Optional[PathLike]]] = ()) -> None:
        self.target = check_output_path(target, field, others=others)
        self.field = field
        parent = self.target.parent if str(self.target.parent) else Path(".")
        try:
            folder = tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=parent)
        except OSError as exc:
            raise InputError(f"{field} {self.target}: cannot write in folder {parent} ({exc.strerror}); "
                             "choose a writable folder") from None
        with _pending_lock:
            _pending.add(folder)
        self.folder = Path(folder)
        self.path = self.folder / self.target.name
        self.done = False

    def take(self, written: PathLike) -> None:
        """Use ``written``, a file the writer created in the private folder under a name of
        its own choosing, as the output."""
        src = Path(written)
        if src.parent.resolve() != self.folder.resolve():
            raise ValueError(f"{src} is not in the staging folder {self.folder}")
        os.replace(src, self.path)

    def commit(self) -> Path:
        """Rename the file written at :attr:`path` over the target; returns the target."""
        if self.done:
            raise ValueError("output already committed or discarded")
        try:
            st = os.lstat(self.path)
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{self.field} {self.target}: the output was not written as a regular file; "
                                 "choose another path")
            check_output_path(self.target, self.field)
            os.replace(self.path, self.target)
        except InputError:
            self.discard()
            raise
        except OSError as exc:
            self.discard()
            raise InputError(f"{self.field} {self.target}: cannot be written ({exc.strerror}); "
                             "choose another path") from None
        self.discard()
        self.done = True
        return self.target

    def discard(self) -> None:
        """Remove the private folder and whatever is in it."""
        shutil.rmtree(self.folder, ignore_errors=True)
        with _pending_lock:
            _pending.discard(str(self.folder))


def _first_non_finite(doc: Any, path: str = "") -> Optional[str]:
    stack: list[tuple[Any, str]] = [(doc, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return p or "(the document)"
        if isinstance(v, dict):
            stack.extend((c, f"{p}.{k}" if p else str(k)) for k, c in reversed(list(v.items())))
        elif isinstance(v, (list, tuple)):
            stack.extend((c, f"{p}[{i}]") for i, c in reversed(list(enumerate(v))))
    return None


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    return str(v)


def json_text(doc: Any, field: str, *, indent: Optional[int] = 2,
              default: Callable[[Any], Any] = _plain) -> str:
    """``doc`` as JSON text ending in a newline. A NaN or infinity anywhere (which JSON
    cannot hold) is an InputError naming ``field`` and the first such value's place."""
    try:
        return json.dumps(doc, indent=indent, allow_nan=False, default=default) + "\n"
    except ValueError:
        plain = json.loads(json.dumps(doc, default=default))
        where = _first_non_finite(plain) or "a value"
        raise InputError(f"{field}: the result holds a number that is not finite at {where}; "
                         "nothing was written (JSON has no NaN or Infinity)") from None


def write_output(path: PathLike, data: Union[bytes, str], field: str, *, mode: Optional[int] = None,
                 others: Iterable[Tuple[str, Optional[PathLike]]] = (), replace: bool = True) -> Path:
    """Write ``data`` to ``path`` whole or not at all; returns the path. ``replace=False``:
    never over an existing file (an InputError when one is there)."""
    out = PendingOutput(path, field, mode=mode, others=others)
    try:
        out.write(data)
        return out.commit(replace=replace)
    except BaseException:
        out.discard()
        raise


class OutputSet:
    """Several outputs of one command, all renamed into place at the end or none at all.

    ``targets``: (field, path) pairs (a None path is skipped); paths must differ from each
    other and from ``inputs`` ((field, path) pairs). ``with OutputSet(...) as outs:`` writes
    through ``outs[field]`` and commits every output on a clean exit, else discards them."""

    def __init__(self, targets: Sequence[Tuple[str, Optional[PathLike]]],
                 inputs: Sequence[Tuple[str, Optional[PathLike]]] = ()) -> None:
        live = [(f, p) for f, p in targets if p is not None]
        for i, (field, path) in enumerate(live):
            check_output_path(path, field, others=list(inputs) + live[:i] + live[i + 1:])
        self._targets = live
        self.outputs: dict[str, Union[PendingOutput, StagedOutput]] = {}

    def open(self, field: str, *, mode: Optional[int] = None) -> PendingOutput:
        path = dict(self._targets)[field]
        out = self.outputs[field] = PendingOutput(path, field, mode=mode)
        return out

    def stage(self, field: str) -> StagedOutput:
        """A :class:`StagedOutput` for ``field``, for code that writes by path; committed
        with the others."""
        path = dict(self._targets)[field]
        out = self.outputs[field] = StagedOutput(path, field)
        return out

    def __getitem__(self, field: str) -> PendingOutput:
        out = self.outputs.get(field) or self.open(field)
        if not isinstance(out, PendingOutput):
            raise TypeError(f"{field} is staged: write to its .path")
        return out

    def commit(self) -> list[Path]:
        return [o.commit() for o in self.outputs.values() if not o.done]

    def discard(self) -> None:
        for o in self.outputs.values():
            o.discard()

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()
