"""vncd.reload: loads run off the reactor thread, one at a time, coalesced; commits on it."""

from __future__ import annotations

import os
import threading

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

import creds
from creds import pem
from creds.objects import ObjectError
from tests import certgen
from vncd.reload import MAX_WAITING_LOADS, Reloader, ReloadResult


class HeldThreads:
    """A stand-in for the thread pool: every call waits until the test releases it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, f, *args, **kwargs) -> defer.Deferred:
        d = defer.Deferred()
        self.calls.append((f, args, kwargs, d))
        return d

    def release(self, count: int = 1) -> None:
        """Run the oldest ``count`` waiting calls (as a worker thread would) and deliver."""
        for _ in range(count):
            f, args, kwargs, d = next(c for c in self.calls if not c[3].called)
            try:
                result = f(*args, **kwargs)
            except Exception:
                d.errback()
            else:
                d.callback(result)

    @property
    def waiting(self) -> int:
        return sum(1 for c in self.calls if not c[3].called)


def server_dir(base: str, name: str = "server") -> str:
    ca = certgen.ca("reload CA")
    return certgen.write_dir(os.path.join(base, name), ca=[ca],
                             server=certgen.server(ca, "localhost", dns=["localhost"]))


class ReloaderCase(SynchronousTestCase):

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        self.registry = creds.new_registry()
        self.objs = [self.registry.create("tls-creds-x509", {
            "id": f"t{i}", "dir": server_dir(base, f"s{i}"), "endpoint": "server"})
            for i in range(2)]
        self.registry.create("secret", {"id": "pw", "data": "x"})
        self.threads = HeldThreads()
        self.committed: list[str] = []
        self.reloader = Reloader(reactor, run_in_thread=self.threads, key_loader=None,
                                 before_commit=lambda obj: self.committed.append(obj.id))


class CoalescingTests(ReloaderCase):
    """One load under way, requests for the same load waiting join one run."""

    def test_storm_gives_two_runs(self) -> None:
        """Forty reload_all requests while one runs: one more run, whose result every
        waiting request gets."""
        first = self.reloader.reload_all(self.registry)
        storm = [self.reloader.reload_all(self.registry) for _ in range(40)]
        self.assertEqual(self.threads.waiting, 1)
        self.threads.release(2)
        results = self.successResultOf(first)
        self.assertEqual([(r.obj.id, r.generation, r.error) for r in results],
                         [("t0", 2, None), ("t1", 2, None)])
        self.assertEqual(self.threads.waiting, 1)
        self.threads.release(2)
        second = [self.successResultOf(d) for d in storm]
        self.assertTrue(all(r is second[0] for r in second))
        self.assertEqual([r.generation for r in second[0]], [3, 3])
        self.assertEqual(len(self.threads.calls), 4)
        self.assertEqual(self.committed, ["t0", "t1", "t0", "t1"])

    def test_only_waiting_loads_are_joined(self) -> None:
        """A request made after its twin started runs again (the files may have changed)."""
        a = self.reloader.reload(self.objs[0])
        self.assertEqual(self.threads.waiting, 1)
        b = self.reloader.reload(self.objs[0])
        c = self.reloader.reload(self.objs[0])
        self.threads.release()
        self.assertEqual(self.successResultOf(a), 2)
        self.threads.release()
        self.assertEqual((self.successResultOf(b), self.successResultOf(c)), (3, 3))

    def test_different_loads_queue_in_order(self) -> None:
        """Reloads of different objects and creations are not joined; they run in order."""
        a = self.reloader.reload(self.objs[0])
        b = self.reloader.reload(self.objs[1])
        c = self.reloader.create(self.registry, "secret", {"id": "s1", "data": "y"})
        d = self.reloader.create(self.registry, "secret", {"id": "s2", "data": "z"})
        order = []
        for deferred, name in ((a, "a"), (b, "b"), (c, "c"), (d, "d")):
            deferred.addCallback(lambda _, name=name: order.append(name))
        while self.threads.waiting:
            self.threads.release()
        self.assertEqual(order, ["a", "b", "c", "d"])
        self.assertIn("s1", self.registry)
        self.assertIn("s2", self.registry)

    def test_waiting_loads_bounded(self) -> None:
        """Beyond MAX_WAITING_LOADS distinct waiting loads, a new one is refused at once;
        a request that joins a waiting load is still taken."""
        self.reloader.reload(self.objs[0])
        self.reloader.reload(self.objs[1])
        for i in range(MAX_WAITING_LOADS - 1):
            self.reloader.create(self.registry, "secret", {"id": f"s{i}", "data": "y"})
        failure = self.failureResultOf(
            self.reloader.create(self.registry, "secret", {"id": "late", "data": "y"}),
            ObjectError)
        self.assertIn("already waiting", failure.value.message)
        self.assertNoResult(self.reloader.reload(self.objs[1]))


class OutcomeTests(ReloaderCase):
    """What a load gives back, and what a failed one leaves in force."""

    def test_failed_prepare_keeps_old(self) -> None:
        """A reload whose files are broken reports the error; the object is unchanged and
        nothing is committed."""
        before = self.objs[0].loaded
        os.unlink(self.objs[0].get("dir") + "/server-key.pem")
        d = self.reloader.reload_all(self.registry)
        self.threads.release(2)
        results = self.successResultOf(d)
        self.assertIsInstance(results[0].error, ObjectError)
        self.assertEqual(results[0].generation, 1)
        self.assertIs(self.objs[0].loaded, before)
        self.assertEqual(results[1], ReloadResult(self.objs[1], 2))
        self.assertEqual(self.committed, ["t1"])

    def test_reload_one_fails_with_the_error(self) -> None:
        """reload(obj) fails with the ObjectError and keeps the old credentials."""
        before = self.objs[0].loaded
        os.unlink(self.objs[0].get("dir") + "/ca-cert.pem")
        d = self.reloader.reload(self.objs[0])
        self.threads.release()
        failure = self.failureResultOf(d, ObjectError)
        self.assertIn("ca-cert.pem", failure.value.message)
        self.assertIs(self.objs[0].loaded, before)

    def test_create(self) -> None:
        """create() registers the prepared object; a duplicate id fails, registering nothing."""
        d = self.reloader.create(self.registry, "secret", {"id": "s1", "data": "y"})
        self.threads.release()
        self.assertIs(self.successResultOf(d), self.registry.get("s1"))
        d = self.reloader.create(self.registry, "secret", {"id": "s1", "data": "z"})
        self.threads.release()
        failure = self.failureResultOf(d, ObjectError)
        self.assertEqual(failure.value.message, "Duplicate ID 's1' for object")

    def test_id_taken_while_preparing(self) -> None:
        """An id taken while the object was being prepared is refused when it is added."""
        d = self.reloader.create(self.registry, "secret", {"id": "s1", "data": "y"})
        taken = self.registry.create("secret", {"id": "s1", "data": "first"})
        self.threads.release()
        self.failureResultOf(d, ObjectError)
        self.assertIs(self.registry.get("s1"), taken)

    def test_next_load_runs_after_a_failure(self) -> None:
        """A load that fails does not stop the queue."""
        bad = self.reloader.create(self.registry, "nonsense", {"id": "x"})
        good = self.reloader.reload(self.objs[0])
        self.threads.release()
        self.failureResultOf(bad, ObjectError)
        self.threads.release()
        self.assertEqual(self.successResultOf(good), 2)


class ThreadTests(TestCase):
    """With the real reactor and thread pool: prepare runs off the reactor thread."""

    timeout = 60

    async def test_prepare_off_commit_on_the_reactor_thread(self) -> None:
        """Key loading happens in a worker thread, the commit on the reactor thread; a
        failing prepare keeps the old credentials."""
        base = os.path.abspath(self.mktemp())
        registry = creds.new_registry()
        obj = registry.create("tls-creds-x509", {"id": "t0", "dir": server_dir(base),
                                                 "endpoint": "server"})
        where = {}

        def key_loader(data, password):
            where["prepare"] = threading.current_thread()
            return pem.parse_private_key(data, password)

        def before_commit(obj):
            where["commit"] = threading.current_thread()

        reloader = Reloader(reactor, key_loader=key_loader, before_commit=before_commit)
        self.assertEqual(await reloader.reload(obj), 2)
        self.assertIsNot(where["prepare"], threading.main_thread())
        self.assertIs(where["commit"], threading.main_thread())

        first = obj.loaded
        os.unlink(os.path.join(obj.get("dir"), "server-cert.pem"))
        with self.assertRaises(ObjectError):
            await reloader.reload(obj)
        self.assertIs(obj.loaded, first)

    async def test_key_checked_in_child_by_default(self) -> None:
        """The default key loader checks keys in a child process; the reload succeeds."""
        base = os.path.abspath(self.mktemp())
        registry = creds.new_registry()
        obj = registry.create("tls-creds-x509", {"id": "t0", "dir": server_dir(base),
                                                 "endpoint": "server"})
        results = await Reloader(reactor).reload_all(registry)
        self.assertEqual(results, [ReloadResult(obj, 2)])
