# -*- test-case-name: tests.vncd.test_reload -*-
"""Loading credentials while serving, without pausing the clients.

Re-reading a credentials directory takes tens of milliseconds (reading
and checking files, building the TLS context) and checking a private key
holds the interpreter lock for as long again.  Done on the reactor
thread, as SIGHUP once did, every client stalls meanwhile; 50 SIGHUPs in
half a second ran 18 reloads back to back.

:class:`Reloader` runs the slow, side-effect-free half of each load
(:meth:`creds.tlscreds.TLSCreds.prepare_reload`,
:meth:`creds.objects.ObjectRegistry.prepare`) in a worker thread, with
private keys checked in a child process (:func:`creds.keycheck.check_in_child`),
and commits the result on the reactor thread.  Loads run one at a time,
in the order asked; a request equal to one still waiting its turn (a
reload of the same object, or of every object of the same registry) joins
it instead of queueing another run, and its Deferred fires with that
run's result.  So a storm of SIGHUPs costs at most the reload under way
and one more.

Users: SIGHUP (:meth:`Reloader.reload_all`), the monitor's
``display-reload`` (:meth:`Reloader.reload`) and ``object-add``
(:meth:`Reloader.create`).

The reactor is injected, and so is the way work reaches a thread (tests
use a synchronous stand-in).  This module knows nothing about
certificates or files: creds loads, this module only decides where and
when.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine, Mapping

from twisted.internet import defer, threads
from twisted.python.failure import Failure

from creds.keycheck import check_in_child
from creds.objects import ObjectError, ObjectRegistry, UserCreatable
from creds.tlscreds import KeyLoader, TLSCreds

__all__ = ["Reloader", "ReloadResult", "MAX_WAITING_LOADS"]

#: Distinct loads waiting behind the one under way; more are refused.
#: Reloads of the same thing join each other, so only object creations
#: (one per ``object-add``) and reloads of many different objects count;
#: a monitor client has no reason to queue more than a handful.
MAX_WAITING_LOADS = 32

#: Runs a function with arguments in a worker thread; a Deferred of its result.
RunInThread = Callable[..., defer.Deferred]


@dataclass(frozen=True)
class ReloadResult:
    """How the reload of one credentials object went."""

    obj: TLSCreds
    #: The generation now in force (the new one, on success).
    generation: int
    #: Why the reload failed (the previous credentials stay), or ``None``.
    error: ObjectError | None = None


@dataclass
class _Load:
    """One load waiting or under way, and everyone waiting for its result."""

    #: What makes two requests the same load (``None``: never joined).
    key: tuple | None
    work: Callable[[], Coroutine[Any, Any, Any]]
    waiting: list[defer.Deferred] = field(default_factory=list)


class Reloader:
    """Runs loads off the reactor thread, one at a time, and commits them on it.

    ``run_in_thread(f, *args, **kwargs)`` (default: the reactor's thread
    pool) runs the slow half; ``key_loader`` checks private keys (default:
    in a child process); ``before_commit(obj)`` is called on the reactor
    thread just before an object's new credentials are installed (the
    ``vncd`` command points its warnings at the object's ``-object``
    option).
    """

    def __init__(self, reactor: Any, *, run_in_thread: RunInThread | None = None,
                 key_loader: KeyLoader | None = check_in_child,
                 before_commit: Callable[[UserCreatable], None] | None = None) -> None:
        self._reactor = reactor
        self._run_in_thread = run_in_thread or self._thread_pool
        self._key_loader = key_loader
        self._before_commit = before_commit
        self._waiting: collections.deque[_Load] = collections.deque()
        self._busy = False

    def _thread_pool(self, f: Callable, *args: Any, **kwargs: Any) -> defer.Deferred:
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                         f, *args, **kwargs)

    # -- requests ---------------------------------------------------------

    def reload_all(self, registry: ObjectRegistry) -> defer.Deferred:
        """Reload every TLS credentials object of ``registry``, one after another.

        Fires with a list of :class:`ReloadResult`, one per object, failed
        ones included (their previous credentials stay in force).
        """
        async def work() -> list[ReloadResult]:
            return [await self._reload_one(obj) for obj in registry
                    if isinstance(obj, TLSCreds)]

        return self._request(("all", registry), work)

    def reload(self, obj: TLSCreds) -> defer.Deferred:
        """Reload ``obj``; fires with its new generation, or fails with the
        :class:`~creds.objects.ObjectError` (the previous credentials stay)."""
        async def work() -> int:
            result = await self._reload_one(obj)
            if result.error is not None:
                raise result.error
            return result.generation

        return self._request(("one", obj), work)

    def create(self, registry: ObjectRegistry, qom_type: str,
               props: Mapping[str, Any]) -> defer.Deferred:
        """Create an object as ``-object`` would and register it; fires with it,
        or fails with the :class:`~creds.objects.ObjectError`."""
        async def work() -> UserCreatable:
            obj = await self._run_in_thread(registry.prepare, qom_type, dict(props),
                                            key_loader=self._key_loader)
            return registry.add(obj)

        return self._request(None, work)

    # -- the queue ----------------------------------------------------------

    def _request(self, key: tuple | None, work: Callable) -> defer.Deferred:
        d = defer.Deferred()
        joined = next((load for load in self._waiting
                       if key is not None and load.key == key), None)
        if joined is None:
            if len(self._waiting) >= MAX_WAITING_LOADS:
                return defer.fail(ObjectError(
                    f"{MAX_WAITING_LOADS} loads are already waiting; try again later"))
            joined = _Load(key, work)
            self._waiting.append(joined)
        joined.waiting.append(d)
        self._next()
        return d

    def _next(self) -> None:
        if self._busy or not self._waiting:
            return
        load = self._waiting.popleft()
        self._busy = True
        defer.Deferred.fromCoroutine(load.work()).addBoth(self._finished, load)

    def _finished(self, result: Any, load: _Load) -> None:
        self._busy = False
        for d in load.waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
        self._next()

    # -- one object ---------------------------------------------------------

    async def _reload_one(self, obj: TLSCreds) -> ReloadResult:
        try:
            loaded = await self._run_in_thread(obj.prepare_reload, key_loader=self._key_loader)
        except ObjectError as e:
            return ReloadResult(obj, obj.loaded.generation, e)
        if self._before_commit is not None:
            self._before_commit(obj)
        obj.commit_reload(loaded)
        return ReloadResult(obj, obj.loaded.generation)
