"""The worker processes of one container, as one service: which bundle, who has it.

``SEATER_WORKERS`` processes share a folder (``SEATER_STATE_DIR``, made by the supervisor
in :mod:`service.__main__`). Two kinds of file live there:

- ``desired.json``: the bundle every worker must serve and its ``generation``, a counter
  that only grows. A reload, answered by whichever worker the request reached, loads and
  smoke-tests the bundle there first and only then publishes it (under a file lock, so
  two reloads at once get distinct generations).
- ``workers/<pid>.json``: what each worker serves now (generation, version, error).

Every worker follows ``desired.json`` (:meth:`WorkerGroup.changed_since` from a loop in
the app's lifespan) and swaps the same way a single process does, atomically, so no
worker ever serves a mix of two bundles; a worker the supervisor restarts after a crash
starts from ``desired.json`` too. Readiness asks the group: ready only when every worker
serves a model. A folder on local disk, not Redis, because the workers of one container
must agree even while Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from service.core.holder import ModelHolder, SwapReport
from service.errors import ReloadInProgress, ServiceError

log = logging.getLogger(__name__)

DESIRED = "desired.json"
LOCK = "desired.lock"
MEMBERS = "workers"


@dataclass(frozen=True)
class Desired:
    """The bundle the whole group serves; ``generation`` orders successive reloads."""

    generation: int
    folder: str  # the bundle folder the reload resolved
    asked: str  # the path the reload asked for (a pointer such as artifacts/current)
    version: str


@dataclass(frozen=True)
class WorkerStatus:
    pid: int
    generation: int
    version: str | None
    error: str | None = None


@dataclass(frozen=True)
class GroupProgress:
    """How many live workers serve a generation, how many failed to load it, out of how many."""

    updated: int
    failed: int
    live: int
    expected: int

    @property
    def settled(self) -> bool:
        return self.updated + self.failed >= self.expected


class WorkerGroup:
    """One container's workers, seen through their shared state folder."""

    def __init__(self, root: Path, expected: int) -> None:
        self.root = Path(root)
        self.expected = expected
        (self.root / MEMBERS).mkdir(parents=True, exist_ok=True)

    # -- the bundle everyone serves ------------------------------------------------------
    def desired(self) -> Desired | None:
        data = _read_json(self.root / DESIRED)
        return Desired(**data) if data else None

    def publish(self, folder: Path, asked: Path, version: str) -> Desired:
        """Make the bundle at ``folder`` the group's under the next generation."""
        with self._locked():
            current = self.desired()
            desired = Desired((current.generation if current else 0) + 1, str(folder),
                              str(asked), version)
            _write_json(self.root / DESIRED, asdict(desired))
        log.info("published bundle %s (%s) as generation %d", version, folder,
                 desired.generation)
        return desired

    def changed_since(self, generation: int) -> Desired | None:
        """The published bundle when it is newer than ``generation``, else None."""
        desired = self.desired()
        return desired if desired and desired.generation > generation else None

    # -- who serves what -----------------------------------------------------------------
    def report(self, status: WorkerStatus) -> None:
        _write_json(self._member(status.pid), asdict(status))

    def leave(self, pid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._member(pid).unlink()

    def members(self) -> list[WorkerStatus]:
        """The statuses of live workers; a dead worker's file is dropped (its replacement
        reports under its own pid)."""
        out = []
        for path in sorted((self.root / MEMBERS).glob("*.json")):
            data = _read_json(path)
            if not data:
                continue
            status = WorkerStatus(**data)
            if _alive(status.pid):
                out.append(status)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return out

    def serving(self) -> int:
        """Live workers with a model."""
        return sum(1 for m in self.members() if m.version is not None)

    def ready(self) -> bool:
        return self.serving() >= self.expected

    def progress(self, generation: int) -> GroupProgress:
        members = self.members()
        updated = sum(1 for m in members if m.generation >= generation and m.error is None)
        failed = sum(1 for m in members if m.generation >= generation and m.error is not None)
        return GroupProgress(updated, failed, len(members), self.expected)

    async def wait_for(self, generation: int, timeout_s: float,
                       poll_s: float = 0.05) -> GroupProgress:
        """Until every worker has loaded (or failed to load) ``generation``, or the timeout."""
        deadline = time.monotonic() + timeout_s
        progress = self.progress(generation)
        while not progress.settled and time.monotonic() < deadline:
            await asyncio.sleep(poll_s)
            progress = self.progress(generation)
        return progress

    def _member(self, pid: int) -> Path:
        return self.root / MEMBERS / f"{pid}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / LOCK, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, data: dict) -> None:
    """Readers see the old file or the new one, never half of either."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class GroupMember:
    """This worker's side of the group: start from the group's bundle, follow every
    reload another worker publishes, and report what it serves."""

    def __init__(self, holder: ModelHolder, group: WorkerGroup, poll_s: float,
                 sync_timeout_s: float) -> None:
        self.holder = holder
        self.group = group
        self.poll_s = poll_s
        self.sync_timeout_s = sync_timeout_s
        self.pid = os.getpid()
        self.generation = 0
        self._error: str | None = None
        self._reported: WorkerStatus | None = None

    async def start(self) -> bool:
        """Load the group's bundle when one was published (this worker replaces one that
        died, or came up after a reload); False when there is none yet."""
        desired = self.group.desired()
        if desired is None:
            self.report()
            return False
        await self._follow(desired)
        return True

    async def reload(self, path: str | None) -> tuple[SwapReport, GroupProgress]:
        """Load here first (a bundle that fails is never published), then have every
        worker load it and wait until they have, or the sync timeout."""
        swap = await self.holder.load(path)
        desired = self.group.publish(swap.path, self.holder.path or swap.path, swap.version)
        self.generation, self._error = desired.generation, None
        self.report()
        progress = await self.group.wait_for(desired.generation, self.sync_timeout_s)
        if not progress.settled:
            log.warning("reload to %s: %d of %d workers updated within %gs", swap.version,
                        progress.updated, progress.expected, self.sync_timeout_s)
        return swap, progress

    async def follow(self) -> None:
        """Until cancelled: load each newer published bundle; keep the status current
        (a first bundle the holder found on its own counts too)."""
        while True:
            desired = self.group.changed_since(self.generation)
            if desired is not None and not self.holder.busy:
                await self._follow(desired)
            self.report()
            await asyncio.sleep(self.poll_s)

    async def _follow(self, desired: Desired) -> None:
        try:
            await self.holder.load(desired.asked, folder=Path(desired.folder))
            self._error = None
        except ReloadInProgress:
            return  # a reload on this worker is running; the next tick sees where it ends
        except ServiceError as exc:  # the holder logged it; the old model keeps serving
            self._error = str(exc)
        self.generation = desired.generation
        self.report()

    def report(self) -> None:
        engine = self.holder.engine
        status = WorkerStatus(self.pid, self.generation, engine.version if engine else None,
                              self._error)
        if status != self._reported:
            self.group.report(status)
            self._reported = status

    def leave(self) -> None:
        self.group.leave(self.pid)
