"""Independent cloud calls of one invocation, run side by side on a small, bounded pool.

A function is billed for its wall-clock time, and almost all of that time is spent waiting for
the network: pre-flight's lookups of 100 instances each, the two objects of every finished
instance, the batches of a large request. ``run_all`` runs such calls concurrently, at most
``POOL_SIZE`` at a time per invocation (``STORE_POOL_SIZE`` for writes of many small objects)
— a call made from inside a pooled call runs inline on its thread instead of opening a second
pool, so nesting never multiplies the bound (and never deadlocks on a full pool). The threads
are the process's, kept from one invocation to the next (``_pool``); every call of an
invocation has ended before it returns.

Each call runs in a copy of the caller's ``contextvars`` context, so the invocation's retry
budget (``shared.retry.patience``) is shared by all of them. When a call fails, the calls not
started yet are cancelled and the budget is told to stop waiting, so a request that is going
to fail anyway does not keep retrying its siblings; the first failure (in call order) is then
raised once every started call has ended — no call outlives the invocation.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from shared import retry

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

T = TypeVar("T")
A = TypeVar("A")

# Concurrent calls per invocation. Small on purpose: an FC instance has a fraction of a CPU
# (the template gives 0.25 vCPU), the SDKs keep a connection pool of 10 (aliyunsdkcore
# ``AcsClient(pool_size=10)``; requests' default for oss2), and a wider fan-out would only
# meet the services' rate limits sooner.
POOL_SIZE = 8
# Writes of many small objects by one call on threads: a fan-out's batch markers (100 for
# 10,000 instances, before its dispatch jobs go out), the results of instances never started,
# the objects an invocation's close still has to write. Each write mostly waits (10 ms and more
# in-region): with 8 at a time a collector look spent about two thirds of its ~0.9 s waiting on
# them; with 16, realistic 10,000-instance fan-outs finished 0.2-2.8 s sooner in five runs out
# of five, taken in turns with 8 (medians 32.5 and 33.5 s). OSS counts requests a second per
# account: 10,000, or 2,000 under sequential name prefixes such as results/{InvokeId}/
# (https://help.aliyun.com/en/oss/user-guide/0004-00000302); 16 writes of ~10 ms each are some
# 1,600 a second at most, and a throttled write (503) is retried as any transient error. oss2
# keeps a connection per concurrent call (``shared.clients.results`` sizes its pool to this).
STORE_POOL_SIZE = 16
# A collector look's writes (each finished instance is two PutObjects in a row, output.txt
# then result.json: ~200 for a look over 100 instances), sent from one thread
# (``shared.clients.oss_writes``): a write in flight costs a connection, not a thread, so a
# look keeps more of them going. 10,000-instance fan-outs (fast profile, 2 cores, in turns):
# 32.1-33.9 s and 58.1-59.6 s of CPU with 32 at once, 32.4-37.0 s and 60.4-68.3 s from 16
# threads — a look took 800-915 ms instead of 895-1005 ms (medians). 32 writes of ~10 ms
# each are some 3,200 a second at most: over OSS's 2,000 under one prefix, a throttled write
# is retried as above (``Writes`` hands it to ``Results.put``), and the look, once its
# patience is spent, is tried again later (``shared.collect``).
WRITES_AT_ONCE = 32

_inside = threading.local()
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads, kept across invocations: an FC instance
    serves invocation after invocation, and starting and joining fresh threads for every group
    of calls cost more than the calls themselves (9 of a 37 ms submit, measured). Its threads
    start as calls need them and then wait, idle, for the next invocation's calls."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            pool = _pools[workers] = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix=f"assistflow-call-{workers}")
        return pool


def run_all(calls: Sequence[Callable[[], T]], workers: int = POOL_SIZE) -> list[T]:
    """The results of ``calls``, in order, run concurrently on at most ``workers`` threads."""
    outcomes = settle(calls, workers)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes  # type: ignore[return-value]  # no exception left in it


def run_each(function: Callable[[A], T], items: Iterable[A], workers: int = POOL_SIZE
             ) -> list[T]:
    """``function(item)`` for every item, concurrently (see ``run_all``)."""
    return run_all([functools.partial(function, item) for item in items], workers)


def settle(calls: Sequence[Callable[[], T]], workers: int = POOL_SIZE,
           stop_on_error: bool = True) -> list[T | BaseException]:
    """Like ``run_all``, but every call's result or exception, in order. With
    ``stop_on_error`` (the default) a call not started when another failed is not started at
    all, and is answered with that failure; without it, every call runs to its own end."""
    group: Calls[T] = Calls(workers if len(calls) > 1 else 1, stop_on_error)
    group.extend(calls)
    return group.settle()


class Calls(Generic[T]):
    """A group of calls run side by side, given in one or more ``extend``s, and ``settle``d
    (waited for, every outcome in order) once: for a caller that finds more calls to make
    while the first ones run — a collector look stores the first page of results while it
    fetches the next, and that page's writes queue behind the first page's on the same pool,
    which never drains between the two. ``settle`` as a function is one ``extend``.

    Inline (each call run by ``extend`` itself) for a pool of one, or inside a pooled call."""

    def __init__(self, workers: int = POOL_SIZE, stop_on_error: bool = True) -> None:
        self._stop_on_error = stop_on_error
        self._count = 0  # calls given
        self._inline = workers <= 1 or getattr(_inside, "active", False)
        self._outcomes: list[T | BaseException] = []  # inline: as they come
        self._failed: BaseException | None = None  # inline: the first failure
        self._futures: list[Future[T]] = []
        if not self._inline:
            self._pool = _pool(workers)
            self._scope = retry.current().child()  # the invocation's budget; stopped on its own

    def extend(self, calls: Iterable[Callable[[], T]]) -> None:
        """Start ``calls`` (inline: run them now). Call ``settle`` in a ``finally``: no
        started call may outlive the invocation."""
        for call in calls:
            self._count += 1
            if self._inline:
                self._run_inline(call)
            elif not self._scope.stopped:  # a call failed already: start no more
                context = contextvars.copy_context()
                future = self._pool.submit(context.run, _pooled, self._scope, call)
                if self._stop_on_error:
                    future.add_done_callback(
                        lambda done: _on_done(done, self._futures, self._scope))
                self._futures.append(future)

    def _run_inline(self, call: Callable[[], T]) -> None:
        if self._failed is not None and self._stop_on_error:
            self._outcomes.append(self._failed)
            return
        try:
            self._outcomes.append(call())
        except Exception as exc:  # handed back to the caller
            self._failed = self._failed or exc
            self._outcomes.append(exc)

    def settle(self) -> list[T | BaseException]:
        """Wait for every started call; each call's result or exception, in order (a call
        never started, because another had failed, is answered with that failure)."""
        if self._inline:
            return self._outcomes
        from concurrent.futures import wait  # only when calls do run side by side

        futures = self._futures
        wait(futures)  # every started call has ended before this invocation goes on
        errors = [None if future.cancelled() else future.exception() for future in futures]
        first = next((error for error in errors if error is not None), None)
        outcomes: list[T | BaseException] = []
        for future, error in zip(futures, errors, strict=True):
            if error is not None or future.cancelled():
                assert first is not None  # only a failure cancels, or stops the submitting
                outcomes.append(error or first)
            else:
                outcomes.append(future.result())
        while len(outcomes) < self._count:  # never submitted: an earlier call had failed
            assert first is not None
            outcomes.append(first)
        return outcomes


def _pooled(scope: retry.Patience, call: Callable[[], T]) -> T:
    _inside.active = True
    try:
        with retry.patience(scope):
            return call()
    finally:
        _inside.active = False


def _on_done(done: Future[T], futures: list[Future[T]], scope: retry.Patience) -> None:
    if done.cancelled() or done.exception() is None:
        return
    scope.stop()  # siblings waiting to retry give up now
    for other in list(futures):
        other.cancel()  # only those not started yet
