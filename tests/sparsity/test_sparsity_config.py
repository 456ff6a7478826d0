"""SparsityConfig and GatedFFN construction reject impossible settings with a ConfigError naming the field."""

import pytest
import torch

from hybridformer.config import ConfigError, apply_overrides, from_dict
from hybridformer.sparsity import GatedFFN, SparsityConfig


def test_defaults_are_valid_and_off():
    cfg = SparsityConfig()
    assert cfg.enabled is False
    assert 0 < cfg.target_active <= 1


@pytest.mark.parametrize("target", [0.0, -0.1, 1.01, 2.0])
def test_target_outside_unit_interval_is_rejected(target):
    with pytest.raises(ConfigError, match="target_active"):
        SparsityConfig(target_active=target)


def test_target_of_one_is_allowed():
    assert SparsityConfig(target_active=1.0).target_active == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_groups", 0),
        ("tau_start", 0.0),
        ("tau_end", 2.0),  # above tau_start=1.0
        ("tau_end", 0.0),
        ("anneal_steps", -1),
        ("threshold", 0.0),
        ("threshold", 1.0),
        ("top_g", 0),
        ("loss_weight", -1.0),
        ("gate_hidden", -4),
    ],
)
def test_out_of_range_fields_are_rejected(field, value):
    with pytest.raises(ConfigError, match=field):
        SparsityConfig(**{field: value})


def test_top_g_above_n_groups_is_rejected_in_top_g_mode_only():
    with pytest.raises(ConfigError, match="top_g"):
        SparsityConfig(n_groups=4, top_g=5, inference="top_g")
    SparsityConfig(n_groups=4, top_g=5, inference="threshold")


def test_unknown_inference_mode_is_rejected_when_loaded():
    with pytest.raises(ConfigError, match="inference"):
        from_dict(SparsityConfig, {"inference": "random"})


def test_overrides_are_validated():
    cfg = apply_overrides(SparsityConfig(), ["--enabled", "true", "--n_groups", "16"])
    assert cfg.enabled and cfg.n_groups == 16
    with pytest.raises(ConfigError, match="target_active"):
        apply_overrides(cfg, ["--target_active", "1.5"])


def test_groups_must_divide_d_ff():
    with pytest.raises(ConfigError, match=r"n_groups.*d_ff=100.*n_groups=8"):
        GatedFFN(16, 100, SparsityConfig(enabled=True, n_groups=8))


def test_group_divisibility_is_not_required_when_gates_are_off():
    ffn = GatedFFN(16, 100, SparsityConfig(enabled=False, n_groups=8))
    assert ffn.d_ff == 100 and ffn.n_groups == 0


def test_bad_constructor_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="activation"):
        GatedFFN(16, 64, SparsityConfig(), activation="swishy")
    with pytest.raises(ValueError, match="d_ff"):
        GatedFFN(16, 0, SparsityConfig())


def test_bad_inputs_raise_value_errors_naming_shapes():
    ffn = GatedFFN(16, 64, SparsityConfig(enabled=True, n_groups=4))
    with pytest.raises(ValueError, match=r"x must be .*\(2, 3, 8\)"):
        ffn(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="key_padding_mask"):
        ffn(torch.randn(2, 3, 16), key_padding_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_padding_mask"):
        ffn(torch.randn(2, 3, 16), key_padding_mask=torch.ones(2, 3))
