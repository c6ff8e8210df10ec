"""Writing a run's files so that a kill at any instant leaves the old or the new file.

Every file a run or an export writes goes through here: a temporary file (or
folder) beside the final one, flushed to disk, then renamed over it. A rename
within one file system is atomic, so readers never see half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time

from kerasdistill.errors import DistillError, FolderInUseError


def prepare_output_dir(path: str, flag: str = "--model_dir") -> str:
    """Creates folder `path` (and its parents), or raises one DistillError saying why not.

    Called before the first file of a run is written, after every check of the
    input, so that an unusable folder costs nothing and leaves nothing behind.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise DistillError(f"{flag}={path} exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise DistillError(f"cannot create {flag}={path}: {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DistillError(f"{flag}={path} is not writable")
    return path


# In a run folder while a process runs there: an advisory lock (flock), which the
# system releases when the process ends, however it ends, so no stale lock survives a
# kill. The file stays (empty of meaning once unlocked): removing it would let two
# processes lock two different files of the same name.
LOCK_FILE = ".run.lock"


def _lock_holder(path: str) -> str:
    try:
        with open(os.path.join(path, LOCK_FILE)) as handle:
            return handle.read().strip() or "unknown"
    except OSError:
        return "unknown"


def _in_use_error(path: str, flag: str) -> DistillError:
    return FolderInUseError(f"{flag}={path} is in use by another process (pid "
                        f"{_lock_holder(path)}); wait for it to end, or give another folder")


def _open_lock_file(path: str, flags: int, flag: str) -> int:
    try:
        return os.open(os.path.join(path, LOCK_FILE), flags, 0o644)
    except OSError as error:
        raise DistillError(f"cannot open {flag}={path}/{LOCK_FILE}: "
                           f"{error.strerror or error}") from None


def _no_locks_error(path: str, flag: str, error: OSError) -> DistillError:
    # e.g. ENOLCK on some network file systems: running unlocked there would let two
    # processes write one run's checkpoints (or one status file) unseen, so refuse instead.
    return DistillError(f"cannot lock {flag}={path} ({error.strerror or error}); its file "
                        "system may not support file locks (flock): give a folder on a "
                        "local disk")


def _try_lock(descriptor: int, mode: int, path: str, flag: str) -> bool:
    """flock(descriptor, mode | LOCK_NB): False when another process holds a conflicting
    lock; any other failure is one DistillError."""
    try:
        fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        raise _no_locks_error(path, flag, error) from None
    return True


def check_not_in_use(path: str, flag: str = "--model_dir"):
    """Raises DistillError when another process holds folder `path` (exclusive_folder).

    Reads only: for the checks that run before anything is written."""
    if not os.path.exists(os.path.join(path, LOCK_FILE)):
        return  # never locked, and nothing is created here
    with shared_folder(path, flag):
        pass  # the shared lock, taken and dropped at once


# A reader's shared lock (check_not_in_use, for milliseconds) must not make a run starting
# at that instant fail: the exclusive lock is tried a few times before it refuses.
_EXCLUSIVE_TRIES, _SECONDS_BETWEEN_TRIES = 5, 0.02


@contextlib.contextmanager
def exclusive_folder(path: str, flag: str = "--model_dir"):
    """Holds folder `path` (which must exist) for this process while the block runs,
    so that two processes never write one run's checkpoints and results at once.
    Raises DistillError when another process holds it."""
    descriptor = _open_lock_file(path, os.O_RDWR | os.O_CREAT, flag)
    try:
        for attempt in range(_EXCLUSIVE_TRIES):
            if _try_lock(descriptor, fcntl.LOCK_EX, path, flag):
                break
            if attempt == _EXCLUSIVE_TRIES - 1:
                raise _in_use_error(path, flag)
            time.sleep(_SECONDS_BETWEEN_TRIES)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def shared_folder(path: str, flag: str = "--model_dir"):
    """Holds folder `path` (which must exist) for reading while the block runs: refused
    (DistillError) while a run holds it, and a run cannot start there meanwhile. A folder
    this process may not write to is read unlocked: no run can start in it either."""
    if not os.path.exists(os.path.join(path, LOCK_FILE)) and not os.access(path, os.W_OK):
        yield path
        return
    descriptor = _open_lock_file(path, os.O_RDONLY | os.O_CREAT, flag)
    try:
        if not _try_lock(descriptor, fcntl.LOCK_SH, path, flag):
            raise _in_use_error(path, flag)
        yield path
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def folder_held_briefly(path: str, flag: str = "--output_dir"):
    """Waits until this process alone holds folder `path` (a flock on the folder
    itself, so no file is left behind), for a short read-modify-write of a file in it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError as error:
        raise DistillError(f"cannot open {flag}={path}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError as error:
            raise _no_locks_error(path, flag, error) from None
        yield path
    finally:
        os.close(descriptor)


def check_creatable(path: str, flag: str):
    """Raises DistillError unless folder `path` exists writable or could be created.

    Reads only: for checks that must run before anything is written.
    """
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise DistillError(f"{flag}={path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DistillError(f"{flag}={path}: {probe} is not writable")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: setting the umask briefly to 0 races with threads creating files.
_UMASK = _read_umask()


def _fsync_dir(path: str):
    with contextlib.suppress(OSError):  # not every file system lets a folder be synced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path: str, payload: bytes):
    """Writes `payload` to `path` through a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would keep the file private
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


def write_json_atomic(path: str, payload: dict):
    write_bytes_atomic(path, (json.dumps(payload, indent=1) + "\n").encode())


def read_json(path: str, what: str) -> dict:
    """Reads a JSON object, or raises DistillError naming the file."""
    try:
        with open(path) as f:
            payload = json.load(f)
    except (OSError, ValueError) as error:
        raise DistillError(f"cannot read {what} {path}: {error}") from None
    if not isinstance(payload, dict):
        raise DistillError(f"{what} {path} does not hold a JSON object")
    return payload


@contextlib.contextmanager
def atomic_directory(path: str):
    """Yields a temporary folder; on success it replaces folder `path` whole.

    The old folder is renamed aside before the new one takes its name and is
    removed after, so `path` holds either the complete old or the complete new
    contents; only between the two renames (microseconds) does it not exist, and
    the aside copy (`.<name>.old-*`) is still there then.
    """
    path = os.path.abspath(path)
    parent, name = os.path.dirname(path), os.path.basename(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp's 0700 would keep the folder private
    try:
        yield tmp
        for root, _, files in os.walk(tmp):
            for file_name in files:
                with open(os.path.join(root, file_name), "rb") as f:
                    os.fsync(f.fileno())
        aside = None
        if os.path.exists(path):
            aside = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
            os.rmdir(aside)
            os.rename(path, aside)
        os.rename(tmp, path)
        _fsync_dir(parent)
        if aside:
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
