"""The real testbed serving a DeepSeek Sparse Attention model (`tiny_dsa`: the indexer keeps 8
keys, so every prompt here is sparse). Its cache entry is the MLA latent and rope plus the
layer's indexer key; the entries go through the store, Basic's and DualPath's reads (the DE path
forced too) and back into prefill, so a turn's first-token logits equal a full recompute only if
the indexer keys came back as computed; bytes per link equal the data-path plan at the DSA entry
width, the KV bytes per token the simulator counts for the model (simcheck.model_spec)."""

from dataclasses import replace

import pytest
from flax import nnx

from dualpath_jax.costmodel.counts import ModelCounts
from dualpath_jax.model import abstract_model
from dualpath_jax.serving import Testbed, TestbedSpec
from dualpath_jax.serving.simcheck import model_spec
from dualpath_jax.workload import Trajectory
from tests.helpers import systems
from tests.model.dsa_helpers import fill_numpy
from tests.serving.test_testbed import (
    BT,
    agents,
    assert_bytes_per_link_match_the_plan,
    assert_first_logits_equal_recompute,
    compile_requests,
    config,
)

# The testbed tests' one pytest-xdist worker (tests/serving/test_testbed.py); the DSA model's shapes
# are its own, so they compile here, once for the three runs.
pytestmark = pytest.mark.xdist_group("testbed")


def _numpy_weights(mcfg):
    """Weights drawn in NumPy (the testbed's `weights` seam): its own initialisers compile one
    program per layer kind, 6.4 s for tiny_dsa on the 2-core VM."""
    return nnx.split(fill_numpy(abstract_model(mcfg), seed=0, std=mcfg.init_std))


@pytest.fixture(scope="module")
def dsa_runs():
    """Basic, DualPath with its own read sides, and DualPath with every read on the DE node, each
    served once on one tiny_dsa host. Two agents of one shape (2 turns, the second hitting 2
    blocks): 2 prefill shapes to compile, since each costs seconds on 2 cores, each at batch 1 and
    2 (the two agents' turns arrive together, so a PE batches them)."""
    spec = TestbedSpec(model="tiny_dsa", tokens_per_block=BT, max_context=128, max_prefill_batch=2, keep_logits=True)
    (turns,) = (a.turns for a in agents(n=1, turns=2))
    tb = Testbed(config(), spec, [Trajectory(f"a{k}", turns) for k in range(2)], weights=_numpy_weights)
    by = {s.name: s for s in systems()}
    out, batches, compiles = {}, {}, {}
    for name, system, side in (("basic", by["basic"], ""), ("dualpath", by["dualpath"], ""), ("de_path", by["dualpath"], "de")):  # fmt: skip
        tb.spec = replace(spec, force_read_side=side)
        with tb.system_run(system) as run:
            with compile_requests() as requests:
                out[name] = (run.serve(), run.finished)
            batches[name] = sum(p.batches for p in run.pes.values())
            compiles[name] = requests
    return tb, out, batches, compiles


def test_dsa_first_token_logits_equal_full_recompute(dsa_runs):
    tb, out, _, _ = dsa_runs
    cfg = tb.mcfg
    assert cfg.is_dsa and all(t.input > cfg.index_topk for a in tb.agents for t in a.turns)  # every prompt sparse
    for name, (m, reqs) in out.items():
        assert m.turns == len(reqs) == sum(len(a.turns) for a in tb.agents) and m.tokens_cached > 0, name
    assert_first_logits_equal_recompute(tb, out)


def test_dsa_bytes_per_link_match_the_plan_at_the_dsa_entry_width(dsa_runs):
    tb, out, _, _ = dsa_runs
    cfg = tb.mcfg
    # Per token per layer: latent + rope + indexer key, in the model dtype (float32 here).
    width = cfg.kv_lora_rank + cfg.qk_rope_dim + cfg.index_head_dim
    kvb = cfg.n_layers * width * 4
    counts = ModelCounts(model_spec(cfg))
    assert counts.kv_parts == ((cfg.kv_lora_rank + cfg.qk_rope_dim) * 4, cfg.index_head_dim * 4)
    assert tb.kvb == counts.kv_bytes_per_token == kvb
    assert_bytes_per_link_match_the_plan(tb, out, kvb)
    m = out["de_path"][0]
    assert m.bytes_read_de_nodes == m.hit_bytes > 0 and m.bytes_read_pe_nodes == 0
    assert m.link_bytes["d2d[1->0]"] == m.hit_bytes  # DE buffer -> DE device -> PE device, whole entries


def test_batched_prefills_are_compiled_by_the_warm_up(dsa_runs):
    tb, out, batches, compiles = dsa_runs
    assert all(batches[name] < m.turns for name, (m, _) in out.items()), batches  # some batch held 2 turns
    assert compiles == {name: [] for name in compiles}
