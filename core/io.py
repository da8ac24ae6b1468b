"""Small, dependency-free file helpers: atomic writes, JSONL, sha256.

Writes go to a temporary file in the same folder and are renamed into place, so a crash
mid-write never leaves a half-written artifact behind (rename is atomic on POSIX). The temporary
file is created with the mode a plain open() gives (0666 less the umask: 0644 under the usual
umask 022), because the rename keeps it: tempfile.mkstemp's 0600 would make every artifact
readable by its owner only.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterable


def _new_temp_file(path: Path) -> tuple[int, Path]:
    """A fresh temporary file beside `path`, open for writing: O_EXCL with a random name, as
    mkstemp does, but with mode 0666 so that the kernel applies the process's umask."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary file name for {path.name}")


def current_umask() -> int:
    """The process's umask. Read from /proc where Linux shows it: os.umask can only read it by
    setting it, and a thread creating a file in between would get the temporary value."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the more private value, should another thread create a file meanwhile
    os.umask(mask)
    return mask


def apply_umask(directory: str | os.PathLike) -> None:
    """Give every file under `directory` at least the permissions a plain open() gives (0666 less
    the umask), adding bits only. Libraries that write through a temporary file create it 0600
    and keep that mode when they rename it: safetensors 0.8 does so for every model and adapter
    weight file, so a stage's weights would be readable by their owner only."""
    wanted = 0o666 & ~current_umask()
    for path in Path(directory).rglob("*"):
        try:
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) & wanted != wanted:
                os.chmod(path, stat.S_IMODE(st.st_mode) | wanted)
        except OSError:  # a file that vanished or belongs to someone else: not ours to change
            continue


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines, atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return atomic_write_text(path, text)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSONL file we wrote ourselves. User data goes through core.records instead,
    which validates every row and reports file:line errors."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one row and flush it to disk (used for log.jsonl during training)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, or of every file under a directory (sorted by relative path)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
