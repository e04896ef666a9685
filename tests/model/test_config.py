import pytest

from dualpath_jax.model import get_config, known_configs


def test_bad_config_name_lists_known_names():
    with pytest.raises(ValueError) as e:
        get_config("ds17b")
    msg = str(e.value)
    assert "ds17b" in msg
    for name in ("tiny", "ds16b", "dsv3"):
        assert name in msg


def test_known_shapes():
    assert set(known_configs()) >= {"tiny", "ds16b", "dsv3"}
    ds16 = get_config("ds16b")
    assert 15.0e9 < ds16.total_params() < 16.5e9  # DeepSeek-V2-Lite: ~15.7B
    assert ds16.kv_bytes_per_token_layer() == 1152
    v3 = get_config("dsv3")
    assert 660e9 < v3.total_params() < 680e9  # DeepSeek-V3: 671B without MTP
    assert 36e9 < v3.active_matmul_params() < 38e9  # ~37B active
    tiny = get_config("tiny")
    assert tiny.dtype == "float32" and 2 <= tiny.n_layers <= 4 and 8 <= tiny.n_routed_experts <= 16


def test_bad_override_is_rejected():
    with pytest.raises(ValueError, match="moe_backend"):
        get_config("tiny", moe_backend="scatter")
    with pytest.raises(TypeError):
        get_config("tiny", not_a_field=1)
