"""FairGate: at most ``size`` inside, the rest let in strictly in arrival order (pure logic,
threads)."""

from __future__ import annotations

import threading
import time

import pytest

from movierec.db.fair_gate import FairGate


def wait_until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Visitor:
    """A thread that enters the gate, notes its arrival inside and stays until let go."""

    def __init__(self, gate: FairGate, name: str, inside: list[str]):
        self.go = threading.Event()

        def visit() -> None:
            with gate.entered():
                inside.append(name)
                self.go.wait(5)

        self.thread = threading.Thread(target=visit, daemon=True)
        self.thread.start()

    def leave(self) -> None:
        self.go.set()
        self.thread.join(5)


def test_a_freed_place_goes_to_the_longest_waiter_never_to_a_newcomer():
    gate, inside = FairGate(1), []
    first = Visitor(gate, "first", inside)
    wait_until(lambda: inside == ["first"])
    waiters = []
    for queued, name in enumerate(("w1", "w2"), start=1):
        waiters.append(Visitor(gate, name, inside))
        wait_until(lambda queued=queued: gate.waiting == queued)  # in line before the next
    first.leave()
    newcomer = Visitor(gate, "newcomer", inside)  # arrives as the place frees up
    wait_until(lambda: len(inside) == 2)
    wait_until(lambda: gate.waiting == 2)  # w2 and the newcomer, in that order
    for visitor in (*waiters, newcomer):
        visitor.leave()
    assert inside == ["first", "w1", "w2", "newcomer"]


def test_it_lets_in_as_many_as_it_has_places_at_once():
    gate, inside = FairGate(2), []
    visitors = [Visitor(gate, str(i), inside) for i in range(3)]
    wait_until(lambda: len(inside) == 2 and gate.waiting == 1)
    visitors[int(inside[0])].leave()
    wait_until(lambda: len(inside) == 3)
    for visitor in visitors:
        visitor.leave()


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("handed_first", [False, True])
def test_a_waiter_interrupted_loses_no_place(handed_first):
    """A waiter killed while it waits (or just as it was let in) leaves the gate as it found
    it: no dead entry in the queue, no place lost."""
    gate, inside = FairGate(1), []
    holder = Visitor(gate, "holder", inside)
    wait_until(lambda: inside == ["holder"])

    class InterruptedTurn(threading.Event):
        def wait(self, timeout=None):
            if handed_first:  # let in by a leaving caller, then interrupted
                holder.leave()
                assert self.is_set()
            raise Interrupted

    gate.turn = InterruptedTurn
    with pytest.raises(Interrupted), gate.entered():
        pass
    gate.turn = None
    assert gate.waiting == 0
    holder.leave()
    after = Visitor(gate, "after", inside)
    wait_until(lambda: inside[-1] == "after")  # else the gate's one place was lost
    after.leave()
