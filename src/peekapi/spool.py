"""The disk spool: batches that could not be delivered, kept as JSONL files until they are.

Layout of ``storage_dir`` (shared safely by any number of processes on one host):

- ``<time>-<pid>-<rand>.jsonl``: a ready file; each line one batch ``{"v":1,"id":...,"events":[...]}``.
  Written in full under a temporary name first, then renamed, so a reader never sees a half-written file.
- ``<ready name>.claim-<pid>``: a file one process has claimed by an atomic ``rename``. Only the claimer reads
  it; it deletes it once every batch in it is acknowledged, or writes the unsent rest back as a new ready file.
  A claim whose process is gone (or that is older than ``STALE_CLAIM_SECONDS``) is taken over by the next
  process that looks.
- ``<ready name>.acks``: the ids of the batches of a claimed file delivered so far, so that a process taking
  over an abandoned claim does not send them again.
- ``.tmp-<pid>-<rand>``: being written. One whose process is gone is published as a ready file (its truncated
  last line, if any, is skipped when read).

Total size is bounded by ``max_bytes``. Every failure (disk full, read-only, permissions) is counted by the
caller through the return values and logged; nothing here raises.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .batch import Batch

logger = logging.getLogger("peekapi")

STALE_CLAIM_SECONDS = 300.0
STALE_ACKS_SECONDS = 60.0
_READY = ".jsonl"
_CLAIM = ".claim-"
_TMP = ".tmp-"
_ACKS = ".acks"


@dataclass
class Claim:
    """A spool file this process owns: its readable batches, and how many lines were corrupt."""

    path: Path
    batches: list[Batch]
    corrupt: int
    done: set[str] = field(default_factory=set)


class Spool:
    """Append, claim, acknowledge and recover spooled batches under one directory. Thread-safe per call."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    @property
    def enabled(self) -> bool:
        """False when ``max_storage_bytes`` is 0: nothing is ever written."""
        return self.max_bytes > 0

    def append(self, batches: list[Batch]) -> tuple[int, int, str | None]:
        """Persist ``batches`` as one new ready file, as many as fit under ``max_bytes``.

        Returns ``(events written, events not written, reason)`` where reason is ``"spool_full"``,
        ``"spool_error"`` or ``"spool_disabled"`` when some were not written. Never raises.
        """
        total = sum(b.count for b in batches)
        if not batches:
            return 0, 0, None
        if not self.enabled:
            return 0, total, "spool_disabled"
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            room = self.max_bytes - self.size()
            lines: list[bytes] = []
            written = 0
            for batch in batches:
                line = encode_line(batch)
                if len(line) > room:
                    break
                room -= len(line)
                lines.append(line)
                written += batch.count
            if lines:
                self._publish(b"".join(lines))
        except OSError as exc:
            logger.error("peekapi: could not write the spool in %s: %s", self.directory, exc)
            return 0, total, "spool_error"
        if written < total:
            logger.error(
                "peekapi: spool %s is full (max_storage_bytes=%d): %d events dropped",
                self.directory,
                self.max_bytes,
                total - written,
            )
            return written, total - written, "spool_full"
        return written, 0, None

    def _publish(self, data: bytes) -> None:
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}"
        tmp = self.directory / f"{_TMP}{os.getpid()}-{name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.rename(tmp, self.directory / f"{name}{_READY}")
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # never leave half a file behind to be read as data later
            raise

    def size(self) -> int:
        """Bytes in the spool directory now (all files: ready, claimed and being written)."""
        total = 0
        for entry in self._entries():
            try:
                total += entry.stat().st_size
            except OSError:
                continue
        return total

    def pending(self) -> bool:
        """Whether a file waits to be sent (unclaimed, or claimed by a process that is gone). Never raises."""
        return self.enabled and next(self._candidates(), None) is not None

    def claim(self) -> Claim | None:
        """Take the oldest unclaimed (or abandoned) file for this process, or None if there is none.

        The ``rename`` makes the claim atomic: two processes never hold the same file. Never raises.
        """
        me = os.getpid()
        for path in self._candidates():
            base = path.name.split(_CLAIM, 1)[0] if _CLAIM in path.name else path.name
            if base.startswith(_TMP):
                base = base.split("-", 2)[-1] + _READY
            target = self.directory / f"{base}{_CLAIM}{me}"
            try:
                os.rename(path, target)
            except OSError:
                continue  # another process took it first, or it is gone
            return self._read(target)
        return None

    def acknowledge(self, claim: Claim, batch_id: str) -> None:
        """Record that ``batch_id`` of ``claim`` was delivered, on disk too (one small append).

        Should this process die before ``finish``, whoever takes the claim over skips the batches recorded here
        instead of sending them again. Also keeps the claim fresh, so it is not taken over as stale. Never raises.
        """
        claim.done.add(batch_id)
        try:
            fd = os.open(self._acks_path(claim.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, batch_id.encode("ascii") + b"\n")
            finally:
                os.close(fd)
            os.utime(claim.path)
        except OSError as exc:
            logger.debug("peekapi: could not record an acknowledgement in the spool: %s", exc)

    def _acks_path(self, claim_path: Path) -> Path:
        return self.directory / (claim_path.name.split(_CLAIM, 1)[0] + _ACKS)

    def _candidates(self) -> Iterator[Path]:
        now = time.time()
        entries = sorted(self._entries(), key=lambda e: e.name.split(_TMP)[-1])
        names = {entry.name for entry in entries}
        for entry in entries:
            name = entry.name
            if name.endswith(_ACKS):
                self._drop_orphan_acks(entry, names, now)
            elif name.endswith(_READY):
                yield Path(entry.path)
            elif _CLAIM in name or name.startswith(_TMP):
                owner = name.rsplit(_CLAIM, 1)[-1] if _CLAIM in name else name[len(_TMP) :].split("-", 1)[0]
                try:
                    age = now - entry.stat().st_mtime
                except OSError:
                    continue
                stale = age > STALE_CLAIM_SECONDS if _CLAIM in name else age > 5.0
                if stale or not _alive(owner):
                    yield Path(entry.path)

    def _drop_orphan_acks(self, entry: os.DirEntry[str], names: set[str], now: float) -> None:
        """Remove an acknowledgement journal whose spool file is gone (its owner died while finishing)."""
        base = entry.name[: -len(_ACKS)]
        if any(n != entry.name and n.startswith(base) for n in names):
            return
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > STALE_ACKS_SECONDS:
                os.unlink(entry.path)

    def _read(self, path: Path) -> Claim:
        batches: list[Batch] = []
        corrupt = 0
        try:
            data = path.read_bytes()
        except OSError as exc:
            logger.error("peekapi: could not read spool file %s: %s", path, exc)
            return Claim(path, [], 0)
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            batch = decode_line(line)
            if batch is None:
                corrupt += 1
            else:
                batches.append(batch)
        if corrupt:
            logger.warning("peekapi: skipped %d corrupt line(s) in spool file %s", corrupt, path.name)
        try:
            acked = set(self._acks_path(path).read_text("ascii", "replace").split())
        except OSError:
            acked = set()
        if acked:  # delivered by an earlier owner that died before finishing
            batches = [b for b in batches if b.batch_id not in acked]
        return Claim(path, batches, corrupt)

    def finish(self, claim: Claim) -> None:
        """Release ``claim``: delete it when every batch is in ``claim.done``, else re-publish the rest.

        Never raises; if the file cannot be rewritten it stays claimed and is taken over again later.
        """
        rest = [b for b in claim.batches if b.batch_id not in claim.done]
        try:
            if rest:
                self._publish(b"".join(encode_line(b) for b in rest))
            os.unlink(claim.path)
        except OSError as exc:
            logger.error("peekapi: could not release spool file %s: %s", claim.path.name, exc)
            return
        with contextlib.suppress(OSError):
            os.unlink(self._acks_path(claim.path))

    def _entries(self) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(self.directory) as it:
                return [e for e in it if e.is_file(follow_symlinks=False)]
        except OSError:
            return []


def encode_line(batch: Batch) -> bytes:
    """One spool line for ``batch``: its id and its events, newline-terminated."""
    return b'{"v":1,"id":"' + batch.batch_id.encode("ascii") + b'","events":' + batch.body + b"}\n"


def decode_line(line: bytes) -> Batch | None:
    """The batch a spool line holds, or None when the line is truncated or corrupt."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    batch_id, events = record.get("id"), record.get("events")
    if not isinstance(batch_id, str) or not batch_id.isascii() or not batch_id:
        return None
    if not isinstance(events, list) or not events or not all(isinstance(e, dict) for e in events):
        return None
    try:
        encoded = [json.dumps(e, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode() for e in events]
    except (ValueError, UnicodeEncodeError):
        return None
    return Batch.of(encoded, batch_id)


def _alive(pid_text: str) -> bool:
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
