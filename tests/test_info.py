"""`mirnet info`: parameters and multiply-accumulates against the reference numbers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mirnet_deploy.cli import main


def _info(*args: str) -> dict:
    result = CliRunner().invoke(main, ["info", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_full_preset_macs_at_256_and_1080p():
    info = _info("full", "--res", "256,1080p")
    assert info["parameters"] == 31_787_419
    assert info["state_dict_keys"] == 797
    at_256, at_1080p = info["macs"]
    assert at_256["gmacs"] == pytest.approx(479.4, rel=0.01)
    # Linear in pixel count: 1920x1080 / 256^2 = 31.64x.
    assert at_1080p["gmacs"] / at_256["gmacs"] == pytest.approx(1920 * 1080 / 256**2, rel=0.001)
    assert at_1080p["gmacs"] == pytest.approx(15170, rel=0.01)


def test_odd_resolution_is_counted_after_padding():
    info = _info("small", "--res", "45x71")
    assert info["macs"][0]["padded"] == "48x72"


def test_checkpoint_source(tmp_path):
    from mirnet_ref.checkpoint import save_checkpoint
    from mirnet_ref.presets import build_preset

    path = save_checkpoint(build_preset("small"), tmp_path / "s.pth")
    info = _info(str(path), "--res", "256")
    assert info["config"]["n_feat"] == 16


def test_bad_inputs_exit_nonzero_with_a_message(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    runner = CliRunner()
    for args in (["info", str(bad)], ["info", "small", "--res", "huge"]):
        result = runner.invoke(main, args)
        assert result.exit_code != 0
        assert "Error:" in result.output
        assert "Traceback" not in result.output


def test_macs_are_counted_once_per_configuration_and_input_shape(monkeypatch):
    """`mirnet-bench` asks for the MACs of every row it times: the small forwards of the bilinear fit
    run once per configuration (not per row or shape), and the numbers are those of a fresh count."""
    from bench.models import gmacs, resolve_model
    from mirnet_ref import model_costs
    from mirnet_ref.complexity import count_macs, forward_macs, learned_macs
    from mirnet_ref.presets import PRESETS
    from mirnet_ref.registry import FAMILIES

    shapes = []

    def counting(model, input_shape, extra_counters):
        shapes.append(input_shape)
        return forward_macs(model, input_shape, extra_counters)

    monkeypatch.setattr(model_costs, "forward_macs", counting)
    model_costs._counted.cache_clear()
    model_costs._small_counts.cache_clear()
    small = resolve_model("small")
    rows = [gmacs(small, (64, 48), 1) for _ in range(3)] + [gmacs(small, (61, 45), 1)]  # 61x45 pads to 64x48
    info = model_costs.describe(PRESETS["small"], [(64, 48), (64, 64)])
    assert shapes == [(1, 3, 8, 8), (1, 3, 8, 12), (1, 3, 12, 8), (1, 3, 12, 12), (1, 3, 16, 20)]
    fresh = count_macs(lambda: FAMILIES["mirnet"].build(PRESETS["small"]), (1, 3, 48, 64),
                       FAMILIES["mirnet"].mac_counters)
    assert rows == [learned_macs(fresh) / 1e9] * 4
    assert info["macs"][0]["breakdown_gmacs"] == {k: v / 1e9 for k, v in sorted(fresh.items())}
    model_costs.input_macs(PRESETS["small"], (1, 3, 48, 64)).clear()  # a caller's copy, not the cache
    assert model_costs.resolution_cost(PRESETS["small"], (64, 48))["gmacs"] == rows[0]


def test_bilinear_fit_of_small_forwards_equals_the_meta_count():
    """Counts read off the small CPU forwards are those of a `meta` forward at the size itself, across
    aspect ratios and batch sizes; inputs below the samples are counted on `meta`, also exactly."""
    from mirnet_ref import model_costs
    from mirnet_ref.complexity import count_macs
    from mirnet_ref.registry import FAMILIES

    for family in ("mirnet", "mirnetv2"):
        entry = FAMILIES[family]
        config = entry.presets["small"]
        for batch, height, width in [(1, 8, 8), (2, 24, 40), (1, 72, 16)]:
            shape = (batch, config.in_channels, height, width)
            meta = count_macs(lambda e=entry, c=config: e.build(c), shape, entry.mac_counters)
            assert model_costs._interpolated(config, shape) == meta, (family, shape)
    mirnet, small = FAMILIES["mirnet"], FAMILIES["mirnet"].presets["small"]
    tiny = (1, 3, 4, 8)  # below the 8x8 samples of MIRNet's size multiple 4: the meta forward counts it
    assert model_costs._interpolated(small, tiny) is None
    meta = count_macs(lambda: mirnet.build(small), tiny, mirnet.mac_counters)
    assert model_costs.input_macs(small, tiny) == meta
