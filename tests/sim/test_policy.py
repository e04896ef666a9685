"""Policy unit tests: exact picks on small hand-made states."""

import pytest

from dualpath_jax.datapath import plan_turn
from dualpath_jax.scheduling import (
    DualPathScheduler,
    EngineLoad,
    GroupLoad,
    LeastLoadedScheduler,
    RoundRobinScheduler,
    SchedContext,
    largest_chunk,
    pack_quota,
    split_fraction,
)
from dualpath_jax.scheduling.dispatch import Dispatcher, Turn
from dualpath_jax.scheduling.dualpath import choose_pe
from dualpath_jax.scheduling.state import RankedGroups, load_key


def group(node, role, *engines):
    es = [EngineLoad(id=i, node=node, role=role, tok=tok, seq=seq, free_kv=free) for i, tok, seq, free in engines]
    return GroupLoad(node=node, engines=es, tok=sum(e.tok for e in es), free_kv=sum(e.free_kv for e in es))


def ctx(queues, beta=float("inf"), bw=1.0):
    return SchedContext(read_queue_s=queues, snic_bytes_per_s=bw, alpha_s=3.0, beta_tokens=beta)


def drive(scheduler, waiting, pes, des, c):
    """Place `waiting` through the Dispatcher, as both worlds do: each placement's loads are applied
    before the next is asked for. Returns the placed turns (pe, de, de_read_fraction)."""
    placed = []
    dispatcher = Dispatcher(
        scheduler, pes, des, c, kv_bytes_per_token=1.0, free_io=False, on_placed=placed.append, clock=lambda: 0.0
    )
    for turn in waiting:
        dispatcher.enqueue(turn)
    dispatcher.schedule()
    return placed


def req(tokens=30, kv=5.0, hit_bytes=0.0):
    """A turn of `tokens` prompt tokens with exactly these KV bytes (what the policy reads)."""
    turn = Turn(agent=0, index=0, input=tokens, hit=0, output=0, kv_bytes_per_token=1.0, arrive=0.0)
    turn.kv_bytes, turn.hit_bytes = kv, hit_bytes
    return turn


def test_the_dispatcher_applies_each_placement_before_the_next():
    pes, des = pe_groups(), de_groups()
    first = Turn(agent=0, index=0, input=500, hit=0, output=100, kv_bytes_per_token=0.0078125, arrive=0.0)
    placed = drive(LeastLoadedScheduler(dual_path=False), [first, req(tokens=40)], pes, des,
                   ctx({0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}))  # fmt: skip
    assert [t.pe for t in placed] == [2, 0]  # the second sees the first's 500 prompt tokens on PE 2
    assert (pes[1].engines[0].tok, pes[1].engines[0].seq) == (550, 2)  # a PE holds the prompt
    assert (des[1].engines[1].tok, des[1].engines[1].free_kv) == (640, 6.0 - 600 * 0.0078125)  # a DE all


# ---- PE choice (paper) --------------------------------------------------------------------------
def pe_groups():
    return [group(0, "prefill", (0, 100, 1, 0), (1, 900, 1, 0)), group(1, "prefill", (2, 50, 1, 0), (3, 700, 1, 0))]


def test_ranked_groups_least_is_the_scan_through_adds_and_rebuilds():
    import random

    rng = random.Random(0)
    groups = RankedGroups(group(n, "prefill", *[(4 * n + i, 0, 0, 0.0) for i in range(4)]) for n in range(6))
    engines = [e for g in groups for e in g.engines]
    for step in range(3000):  # enough adds that the heap is rebuilt many times
        e = rng.choice(engines)
        tokens = rng.randint(1, 50)
        if e.tok >= tokens and rng.random() < 0.5:
            tokens = -tokens
        groups[e.node].add(e, tokens, requests=1 if tokens > 0 else -1)
        scan = min(groups, key=lambda g: g.least_key)
        assert groups.least() is scan, step
        assert scan.least_key == load_key(min(engines, key=load_key))
    assert len(groups.heap) <= 4 * len(groups) + 64 + 1


def test_pe_prefers_short_read_queue_nodes_and_skips_overloaded():
    assert choose_pe(pe_groups(), ctx({0: 1.0, 1: 5.0}, beta=800)).id == 0  # node 0 about to idle
    assert choose_pe(pe_groups(), ctx({0: 4.0, 1: 5.0}, beta=800)).id == 2  # all long: fewest tok
    assert choose_pe(pe_groups(), ctx({0: 1.0, 1: 1.0}, beta=800)).id == 2
    assert choose_pe(pe_groups(), ctx({0: 9.0, 1: 1.0}, beta=60)).id == 2
    assert choose_pe(pe_groups(), ctx({0: 1.0, 1: 1.0}, beta=10)) is None  # all overloaded: stop


# ---- DE choice (paper, two phases) ----------------------------------------------------------------
def de_groups():
    return [
        group(2, "decode", (8, 100, 3, 10.0), (9, 50, 1, 2.0)),
        group(3, "decode", (10, 80, 1, 6.0), (11, 40, 2, 6.0)),
    ]


def test_dualpath_de_two_phase_exact_picks():
    waiting = [req(kv=5.0), req(kv=5.0), req(kv=3.0)]
    out = drive(
        DualPathScheduler(dual_path=False), waiting, pe_groups(), de_groups(), ctx({0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0})
    )
    # phase 1 -> node 3 (120 < 150); R = first two (5 + 5 <= 12); Z = 1.05 * (60 + 120) / 2 = 94.5
    # r1: d11 (40 + 30 <= Z); r2: only d10 has room, over Z -> fewest tok; r3: node 2 (150 < 180), d8
    assert [p.de for p in out] == [11, 10, 8]


def test_dualpath_stops_when_no_group_has_room():
    out = drive(
        DualPathScheduler(dual_path=False),
        [req(kv=13.0), req(kv=1.0)],
        pe_groups(),
        de_groups(),
        ctx({0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}),
    )
    assert out == []  # FIFO: the head does not fit the chosen group, nothing overtakes it


def test_dualpath_read_side_is_shorter_queue():
    out = drive(
        DualPathScheduler(dual_path=True),
        [req(hit_bytes=1.0)],
        pe_groups(),
        de_groups(),
        ctx({0: 1.0, 1: 2.0, 2: 0.5, 3: 0.5}),
    )
    assert (out[0].pe, out[0].de, out[0].de_read_fraction) == (2, 11, 1.0)  # node 3 shorter than 1
    out = drive(
        DualPathScheduler(dual_path=True),
        [req(hit_bytes=1.0)],
        pe_groups(),
        de_groups(),
        ctx({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}),
    )
    assert out[0].de_read_fraction == 0.0  # tie goes to the PE node


# ---- baselines ----------------------------------------------------------------------------------
def test_least_loaded_exact_picks():
    out = drive(
        LeastLoadedScheduler(dual_path=True),
        [req(kv=5.0), req(kv=5.0)],
        pe_groups(),
        de_groups(),
        ctx({0: 5.0, 1: 9.0, 2: 1.0, 3: 0.0}),
    )
    assert [(p.pe, p.de) for p in out] == [(2, 11), (2, 10)]
    assert out[0].de_read_fraction == 1.0


def test_round_robin_cycles_and_skips_full_decode_engines():
    out = drive(
        RoundRobinScheduler(dual_path=False),
        [req(kv=5.0) for _ in range(4)],
        pe_groups(),
        de_groups(),
        ctx({0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}),
    )
    # DE order 8, 9 (no room for 5), 10, 11, then 8 again
    assert [p.de for p in out] == [8, 10, 11, 8]
    assert [p.pe for p in out] == [0, 1, 2, 3]


# ---- split read (our extension) ------------------------------------------------------------------
def test_split_read_finishes_both_queues_together():
    c = ctx({0: 2.0, 2: 0.5}, bw=1e9)
    r = req(hit_bytes=3e9)
    x = split_fraction(0, 2, r, c)
    assert x == pytest.approx(0.75)
    assert 2.0 + (1 - x) * 3.0 == pytest.approx(0.5 + x * 3.0)
    assert split_fraction(0, 2, r, ctx({0: 0.0, 2: 10.0}, bw=1e9)) == 0.0
    assert split_fraction(0, 2, r, ctx({0: 10.0, 2: 0.0}, bw=1e9)) == 1.0
    out = drive(
        LeastLoadedScheduler(dual_path=True, split_read=True),
        [r],
        pe_groups(),
        de_groups(),
        ctx({0: 2.0, 1: 2.0, 2: 0.5, 3: 0.5}, bw=1e9),
    )
    assert out[0].de_read_fraction == pytest.approx(0.75)


def test_the_testbed_rounds_a_split_to_whole_blocks_and_the_simulator_does_not():
    """With `read_block_tokens` (the testbed) the DE share is the nearest whole number of the hit's
    blocks, a tie to the PE node; without (the simulator) it is the policy's fraction."""
    from dualpath_jax.scheduling.dispatch import whole_blocks

    assert [whole_blocks(f, 4) for f in (0.0, 0.1, 0.125, 0.13, 0.62, 0.875, 1.0)] == [0, 0, 0, 0.25, 0.5, 0.75, 1]
    assert whole_blocks(0.5, 3) == 1 / 3 and whole_blocks(0.7, 0) == 0.0
    queues = {0: 2.0, 1: 2.0, 2: 0.5, 3: 0.5}  # split_fraction 0.75 of a 3e9-byte hit (above)
    for block_tokens, want in ((0, 0.75), (1000, 2 / 3), (3000, 1.0)):
        placed = []
        dispatcher = Dispatcher(LeastLoadedScheduler(dual_path=True, split_read=True), pe_groups(), de_groups(),
                                ctx(queues, bw=1e9), kv_bytes_per_token=1.0, free_io=False,
                                on_placed=placed.append, clock=lambda: 0.0, read_block_tokens=block_tokens)  # fmt: skip
        turn = Turn(agent=0, index=0, input=3100, hit=3000, output=0, kv_bytes_per_token=1.0, arrive=0.0)
        turn.kv_bytes, turn.hit_bytes = 5.0, 3e9  # fits a DE; the policy reads 3e9 hit bytes
        dispatcher.enqueue(turn)
        dispatcher.schedule()
        assert placed[0].de_read_fraction == pytest.approx(want), block_tokens


# ---- intra-engine: quota packing and chunk search -------------------------------------------------
def predict(cached, new):  # toy curve in exact binary fractions, growing with both
    return new * (1 + cached / 1024) / 1024


@pytest.mark.parametrize(
    "cached, new, budget",
    [(0, 1000, 0.3), (500, 1000, 0.3), (0, 10, 5.0), (2000, 400, 0.0009), (0, 1, 0.001), (0, 3, 0.0)],
)
def test_largest_chunk_matches_brute_force(cached, new, budget):
    brute = max([k for k in range(0, new + 1) if k == 0 or predict(cached, k) <= budget])
    assert largest_chunk(cached, new, budget, predict) == brute


@pytest.mark.parametrize("curve", ["convex", "concave", "steps"])
@pytest.mark.parametrize("step", [1, 7, 64])
def test_largest_chunk_finds_the_boundary_from_either_side(curve, step):
    # the search starts at a proportional guess: under the answer for a convex curve (attention
    # grows with k), over it for a concave one, off by many steps for a staircase
    curves = {
        "convex": lambda c, k: k / 1024 + k * k / 2**20,
        "concave": lambda c, k: min(k, 300) / 256 + k / 2**16,
        "steps": lambda c, k: (k // 500) / 8,
    }
    f = curves[curve]
    new = 2000
    for budget in [0.0, 0.001, 0.05, 0.3, 0.9, 1.0, 1.2, 2.5, 3.9]:
        allowed = [k for k in range(0, new + 1) if k == new or k % step == 0]
        brute = max(k for k in allowed if k == 0 or f(0, k) <= budget)
        assert largest_chunk(0, new, budget, f, step=step) == brute, budget


def test_pack_quota_fifo_then_chunk():
    queue = [(0, 128), (1024, 64), (0, 512)]  # 0.125 s, 0.125 s, 0.5 s
    assert pack_quota(queue, 0.5, predict) == [128, 64, 256]
    assert pack_quota(queue, 0.5, predict, min_chunk=257) == [128, 64]
    assert pack_quota([(0, 1024)], 0.25, predict) == [256]  # head alone, chunked to the quota
    assert pack_quota([(0, 128)], 0.5, predict) == [128]
    assert pack_quota([], 0.5, predict) == []


# ---- data path ------------------------------------------------------------------------------------
def test_plans_put_bytes_on_the_right_links():
    kw = dict(cached=100, new=10, output=5, kv_bytes_per_token=2.0)
    pe = plan_turn(de_read_fraction=0.0, free_io=False, **kw)
    de = plan_turn(de_read_fraction=1.0, free_io=False, **kw)
    assert (pe.read_pe_bytes, pe.read_de_bytes, pe.pe_in_bytes, pe.pe_out_bytes, pe.de_h2d_bytes, pe.write_bytes) == (
        200,
        0,
        200,
        220,
        220,
        30,
    )
    assert (de.read_pe_bytes, de.read_de_bytes, de.pe_in_bytes, de.pe_out_bytes, de.de_h2d_bytes) == (
        0,
        200,
        200,
        20,
        220,
    )
    assert (pe.de_read_fraction, de.de_read_fraction) == (0.0, 1.0)
    assert sum(plan_turn(de_read_fraction=1.0, free_io=True, **kw).bytes_on().values()) == 0
    # a split read, 40 of the 200 hit bytes already in a DRAM tier: 160 from storage, 1/4 via the DE
    sp = plan_turn(de_read_fraction=0.25, free_io=False, tier_hit_bytes=40.0, **kw)
    assert (sp.read_pe_bytes, sp.read_de_bytes, sp.pe_in_bytes, sp.pe_out_bytes) == (120, 40, 200, 170)
    with pytest.raises(ValueError, match="de_read_fraction"):
        plan_turn(de_read_fraction=1.5, free_io=False, **kw)
