"""Fork-based parallel map for CPU-bound work (YAML parsing, feed rendering) that holds the GIL.

Children are forked, so they start with everything imported and with `state` (a snapshot, say) already in
memory: nothing big is pickled on the way in, only each task's arguments and its results. Used at
start-up and for exports, before gunicorn forks its workers and before any scheduler thread exists;
a fork from a threaded process is safe here because children only compute and return.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_state: Any = None  # set in each child by the pool's initializer; never in the parent


def _forget_parents_children() -> None:
    """In a process forked by anyone (a gunicorn or granian worker): the multiprocessing children listed
    are the parent's, not ours. Left listed, multiprocessing's exit handler tries to join them when this
    process exits and prints 'AssertionError: can only join a child process' (one parse process, the warm
    start's walk, may still be ending when the server forks its workers)."""
    multiprocessing.process._children.clear()  # type: ignore[attr-defined]


os.register_at_fork(after_in_child=_forget_parents_children)


def _init(state: Any) -> None:
    global _state
    _state = state
    _die_with_parent()


def _die_with_parent() -> None:
    """Ask Linux to kill this child when its parent dies (a killed build must not leave workers behind:
    they hold the pool's pipes open, so they would otherwise wait forever)."""
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: the pool still ends its workers on any orderly exit
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _call(args: tuple[Callable[[Any, T], R], T]) -> R:
    func, task = args
    return func(_state, task)


def fork_imap(func: Callable[[Any, T], R], tasks: Iterable[T], state: Any, workers: int) -> Iterator[R]:
    """func(state, task) for each task, in order, computed by this process and `workers - 1` forked ones.

    This process computes too, taking the next task whenever the others have enough queued: the split
    follows each side's actual speed, and this side's results never cross a pipe (a round trip through
    pickle costs a tenth of what parsing does)."""
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        yield from (func(state, task) for task in tasks)
        return
    context = multiprocessing.get_context("fork")
    ahead = 2 * (workers - 1)  # tasks queued for the other processes while this one computes one
    with ProcessPoolExecutor(workers - 1, mp_context=context, initializer=_init, initargs=(state,)) as pool:
        # task index -> (its result,) when computed here, or the Future of one computed there
        results: dict[int, tuple[Any] | Future] = {}
        queued: list[Future] = []
        taken = 0  # tasks handed out so far, to either side
        try:
            for index in range(len(tasks)):
                while not _ready(results.get(index)):
                    queued = [future for future in queued if not future.done()]
                    while len(queued) < ahead and taken < len(tasks):
                        results[taken] = future = pool.submit(_call, (func, tasks[taken]))
                        queued.append(future)
                        taken += 1
                    if taken < len(tasks):
                        results[taken] = (func(state, tasks[taken]),)
                        taken += 1
                    else:
                        due = results[index]
                        assert isinstance(due, Future), "not ready, so computed elsewhere"
                        due.exception()  # all handed out: wait for the one due next
                result = results.pop(index)
                yield result[0] if isinstance(result, tuple) else result.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # a failure or an abandoned iterator: stop queued work
            raise


def _ready(result: tuple[Any] | Future | None) -> bool:
    return isinstance(result, tuple) or (result is not None and result.done())


def fork_map(func: Callable[[Any, T], R], tasks: Iterable[T], state: Any, workers: int) -> list[R]:
    """[func(state, task) for task in tasks], computed by this process and `workers - 1` forked ones."""
    return list(fork_imap(func, tasks, state, workers))


def fork_call(func: Callable[..., R], *args: Any) -> Future[R]:
    """func(*args) in one forked process, started now; the result (or exception) arrives in the future."""
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(1, mp_context=context, initializer=_die_with_parent)
    future = pool.submit(func, *args)
    pool.shutdown(wait=False)  # the submitted call still runs; the process exits after it
    return future
