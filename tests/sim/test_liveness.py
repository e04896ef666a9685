"""The event loop refuses to spin: virtual time must advance, and a violation names the component."""

import math

import pytest

from dualpath_jax.sim.engines import PrefillNode
from dualpath_jax.sim.events import EventLoop, LivelockError
from dualpath_jax.sim.simulator import Simulation

from ..helpers import cost_for, growing_agents, small_config


class Spinner:
    def __init__(self, loop: EventLoop, delay: float):
        self.loop, self.delay = loop, delay

    def again(self) -> None:
        self.loop.at(self.loop.now + self.delay, self.again)


def test_a_component_rescheduling_itself_at_the_same_time_is_named():
    loop = EventLoop(max_same_time=1000, max_events=10**6)  # the budget stops a broken check
    loop.at(1.0, Spinner(loop, 0.0).again)
    with pytest.raises(LivelockError, match=r"1,001 events ran at t=1 s .*Spinner\.again"):
        loop.run()


def test_events_beyond_the_workload_budget_are_refused_even_if_time_advances():
    loop = EventLoop(max_events=500)
    loop.at(0.0, Spinner(loop, 1e-3).again)
    with pytest.raises(LivelockError, match=r"501 events exceed the workload's budget of 500 .*Spinner\.again"):
        loop.run()
    grown = EventLoop(max_events=500)
    grown.allow(100)
    grown.at(0.0, Spinner(grown, 1e-3).again)
    with pytest.raises(LivelockError, match="budget of 600"):
        grown.run()


@pytest.mark.parametrize("when", [-1.0, math.nan])
def test_an_event_in_the_past_or_at_nan_is_refused(when):
    loop = EventLoop()
    loop.at(2.0, lambda: loop.at(when, print))
    with pytest.raises(LivelockError, match=r"print was scheduled at t=.* before now \(2.0 s\)"):
        loop.run()


def test_a_real_run_stays_inside_its_budget_and_a_spinning_engine_is_caught(monkeypatch):
    cfg = small_config(agents=8)
    agents = growing_agents(8, turns=3)
    system = cfg.systems[1]
    sim = Simulation(cfg, system, agents, cost_for(cfg))
    budget, same = sim.loop.max_events, sim.loop.max_same_time
    metrics = sim.run()
    assert 0 < metrics.events < budget / 10 and same >= 8
    # An engine that hands every batch back to itself without advancing time is stopped and named.
    original = PrefillNode.submit

    def submit(self, req):
        original(self, req)
        self.loop.at(self.loop.now, submit, self, req)

    monkeypatch.setattr(PrefillNode, "submit", submit)
    with pytest.raises(LivelockError, match=r"submit"):
        Simulation(cfg, system, agents, cost_for(cfg)).run()
