from dualpath_jax.datapath import plan_turn
from dualpath_jax.scheduling import EngineLoad, LeastLoadedScheduler, RequestView, choose_de, choose_pe


def engines():
    pes = [EngineLoad(0, 0, "prefill", seq=2, tok=900), EngineLoad(1, 0, "prefill", seq=1, tok=300),
           EngineLoad(2, 1, "prefill", seq=0, tok=300)]
    des = [EngineLoad(8, 2, "decode", seq=3, tok=100, free_kv=10.0),
           EngineLoad(9, 2, "decode", seq=1, tok=50, free_kv=2.0),
           EngineLoad(10, 3, "decode", seq=1, tok=80, free_kv=6.0)]
    return pes, des


def test_pe_least_tokens_then_fewest_requests():
    pes, _ = engines()
    assert choose_pe(pes).id == 2


def test_de_least_tokens_among_those_with_room():
    _, des = engines()
    assert choose_de(des, RequestView(tokens=10, hit_tokens=0, kv_bytes=5.0)).id == 10
    assert choose_de(des, RequestView(tokens=10, hit_tokens=0, kv_bytes=1.0)).id == 9
    assert choose_de(des, RequestView(tokens=10, hit_tokens=0, kv_bytes=11.0)) is None


def test_read_side_shorter_queue_only_with_dual_path():
    pes, des = engines()
    req = RequestView(tokens=10, hit_tokens=5, kv_bytes=5.0)
    queues = {0: 5.0, 1: 9.0, 2: 1.0, 3: 0.0}
    dual = LeastLoadedScheduler(dual_path=True).place(req, pes, des, queues)
    assert (dual.pe, dual.de, dual.read_node, dual.read_on_de) == (2, 10, 3, True)
    single = LeastLoadedScheduler(dual_path=False).place(req, pes, des, queues)
    assert (single.read_node, single.read_on_de) == (1, False)
    tie = LeastLoadedScheduler(dual_path=True).place(req, pes, des, {0: 0, 1: 0.0, 2: 0, 3: 0.0})
    assert tie.read_on_de is False


def test_plans_put_bytes_on_the_right_links():
    kw = dict(cached=100, new=10, output=5, kv_bytes_per_token=2.0)
    pe = plan_turn(read_on_de=False, free_io=False, **kw)
    de = plan_turn(read_on_de=True, free_io=False, **kw)
    assert (pe.read_bytes, pe.pe_in_bytes, pe.pe_out_bytes, pe.de_h2d_bytes, pe.write_bytes) == \
        (200, 200, 220, 220, 30)
    assert (de.read_bytes, de.pe_in_bytes, de.pe_out_bytes, de.de_h2d_bytes) == (200, 200, 20, 220)
    assert sum(plan_turn(read_on_de=True, free_io=True, **kw).bytes_on().values()) == 0
