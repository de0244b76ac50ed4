"""Atomic file writes, reads that name the file they fail on, and file digests.

Every artifact goes to a temporary file in the same folder, then is renamed: a killed process
leaves either the old file or the new one, never half of one. The new file gets the ordinary
permissions of the process (``0666`` less the umask, as ``open`` would give), not the ``0600`` of a
temporary file, so a reports or runs folder shared on a server stays readable to colleagues.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


class DiskFullError(OSError):
    """No space left where a file was being written (names the file; the earlier file is untouched)."""


#: below this many free bytes, a failed write is taken for a full disk whatever the writer said
#: (torch's zip writer reports one as "[enforce fail at inline_container.cc] . unexpected pos")
FULL_DISK_BYTES = 16 * 2**20


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full_error(path: Path, cause: BaseException) -> DiskFullError | None:
    """The :class:`DiskFullError` a failed write of ``path`` means, or ``None`` if the disk has room."""
    free = _free_bytes(path.parent)
    if not (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) and (free is None or free >= FULL_DISK_BYTES):
        return None
    free_s = f"{free / 2**20:.1f} MiB free" if free is not None else "free space unknown"
    return DiskFullError(errno.ENOSPC, f"no space left on the device holding {path.parent} while writing {path.name} "
                         f"({free_s}): nothing was replaced (the earlier file, if any, is intact); free some space, or "
                         "point WSSS_RUNS / WSSS_CACHE at another disk, and run the same command again: a run resumes "
                         "from its last checkpoint", str(path))


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds. A
    write that fails on a full disk raises :class:`DiskFullError` naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp",
                                   dir=path.parent)
    except OSError as e:
        full = disk_full_error(path, e)
        if full is not None:
            raise full from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            if tmp_path.exists():
                os.chmod(tmp_path, 0o666 & ~_umask())
            os.replace(tmp_path, path)
        except (OSError, RuntimeError) as e:
            if tmp_path.exists():
                tmp_path.unlink()  # the partial file first: it holds the space being measured
            full = disk_full_error(path, e)
            if full is not None:
                raise full from None
            raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    """The process's umask (Linux: read from /proc; elsewhere by setting and restoring it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` through a temporary file and a rename."""
    import torch  # lazy: heavy: this module stays importable without torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def torch_load(path: str | os.PathLike, map_location="cpu", weights_only: bool = False) -> Any:
    """``torch.load`` of ``path``; a missing, truncated or foreign file raises an error that names
    it (torch's own message, e.g. "PytorchStreamReader failed", does not)."""
    import torch  # lazy: heavy: this module stays importable without torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated or not a torch file
        raise CorruptFileError(f"{path} cannot be read: it is corrupt, truncated or not a torch file "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); delete it "
                               "(or its run folder) and make it again") from e


def check_torch_file(path: str | os.PathLike) -> None:
    """A cheap integrity check of a ``torch.save`` file without loading it (its zip directory,
    which sits at the end of the file and is gone from a truncated one); raises naming the file."""

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with zipfile.ZipFile(path) as z:
            z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CorruptFileError(f"{path} is corrupt or truncated (not a readable torch file: {e}); delete it "
                               "(or its run folder) and make it again") from None


class CorruptFileError(ValueError):
    """A file that exists but cannot be read (names the file)."""


def _json_default(o: Any) -> Any:
    try:
        import numpy as np  # lazy: optional: absent on some machines (the except clause says what then)

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex)."""

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_DIGESTS: dict[tuple, str] = {}


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def file_digests_cached(paths: list[Path], cache_file: str | os.PathLike | None = None) -> list[str]:
    """SHA-256 of many files, remembered by each file's stat (path, size, modification time,
    inode): a file is read again only when it changed, so identifying a large folder a second time
    costs a ``stat`` per file. The memory is kept per process and in ``cache_file`` (JSON)."""
    keys = [_stat_key(Path(p)) for p in paths]
    disk: dict[str, str] = {}
    if cache_file and any(k not in _DIGESTS for k in keys):
        try:
            disk = json.loads(Path(cache_file).read_text())
        except (OSError, ValueError):
            disk = {}
    out, added = [], False
    for p, k in zip(paths, keys):
        if k not in _DIGESTS:
            sk = "|".join(map(str, k))
            if sk not in disk:
                disk[sk] = file_digest(p)
                added = True
            _DIGESTS[k] = disk[sk]
        out.append(_DIGESTS[k])
    if cache_file and added:
        try:
            write_text(cache_file, json.dumps(disk))
        except OSError:
            pass  # a read-only cache only costs time
    return out


def file_digest_cached(path: str | os.PathLike) -> str:
    """:func:`file_digest`, remembered by the file's stat in this process."""
    return file_digests_cached([Path(path)])[0]
