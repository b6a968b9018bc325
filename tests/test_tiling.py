"""Tiling: origins and blend weights, exact reconstruction with pointwise and x2 stand-in models,
profile and memory-budget limits, and the seam PSNR of MIRNet (global attention) vs untiled."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from engines.manifest import Profile
from engines.runners import Runner, TensorSpec, TorchRunner
from engines.tiling import TiledRunner, ramp_weights, seam_psnr, tile_for_budget, tile_origins
from mirnet_deploy.errors import UserError


class StandIn(Runner):
    """A stand-in model with the local receptive field tiling assumes; it records the shapes it ran.

    `scale` 1: a pointwise map; `scale` 2: nearest-neighbour x2 upsampling of that map.
    """

    def __init__(self, scale: int = 1, profiles: list[Profile] | None = None):
        self.name = f"stand-in-x{scale}"
        self.scale = scale
        self.input_spec = TensorSpec("input", "float32", (-1, 3, -1, -1))
        self.output_spec = TensorSpec("output", "float32", (-1, 3, -1, -1))
        self.shapes: list[tuple[int, ...]] = []
        if profiles is not None:
            self.profiles = profiles

    def run(self, x: np.ndarray) -> np.ndarray:
        batch = self.check_batch(x)
        self.shapes.append(batch.shape)
        mapped = np.sqrt(batch) * 0.7 + batch * batch * 0.3
        return mapped.repeat(self.scale, axis=2).repeat(self.scale, axis=3)


def _batch(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, height, width), dtype=np.float32)


@pytest.mark.parametrize(("n", "tile", "overlap", "expected"), [
    (10, 4, 1, [0, 3, 6]),
    (384, 192, 32, [0, 160, 192]),
    (100, 40, 8, [0, 32, 60]),
    (64, 64, 16, [0]),
    (30, 64, 16, [0]),
])
def test_tile_origins_examples(n, tile, overlap, expected):
    assert tile_origins(n, tile, overlap) == expected


def test_tile_origins_cover_every_axis_with_the_requested_overlap():
    for n in range(1, 130, 3):
        for tile in range(4, 70, 4):
            for overlap in range(0, tile, 5):
                origins = tile_origins(n, tile, overlap)
                extent = min(tile, n)
                assert origins[0] == 0
                assert origins[-1] + extent == n  # the last tile ends flush with the border
                assert all(0 <= o <= n - extent for o in origins)
                assert all(b - a >= 1 and a + extent - b >= overlap for a, b in itertools.pairwise(origins))


@pytest.mark.parametrize("args", [(0, 4, 0), (10, 4, 4), (10, 4, -1)])
def test_tile_origins_rejects_invalid_arguments(args):
    with pytest.raises(ValueError, match="tile_origins needs"):
        tile_origins(*args)


def test_ramp_weights_blend_to_one_and_keep_image_borders():
    overlap = 8
    first, second = ramp_weights(0, 32, 56, overlap), ramp_weights(24, 32, 56, overlap)
    assert first[0] == 1  # image borders are not attenuated
    assert second[-1] == 1
    assert first[:24].tolist() == [1] * 24
    assert second[0] == pytest.approx(0.5 / overlap)  # small but positive at a tile border
    np.testing.assert_allclose(first[24:] + second[:8], 1.0, atol=1e-7)  # the ramps cross-fade
    assert ramp_weights(16, 32, 80, overlap).min() > 0
    assert ramp_weights(16, 32, 80, 0).tolist() == [1] * 32


@pytest.mark.parametrize(("shape", "tile", "overlap"), [
    ((1, 70, 90), 32, 8),
    ((2, 41, 37), 16, 6),  # batch 2, odd sizes
    ((1, 13, 100), 24, 4),  # one axis fits into a single tile
    ((1, 64, 64), 32, 0),  # tiles abut
])
def test_pointwise_model_is_reconstructed_exactly(shape, tile, overlap):
    stand_in = StandIn()
    batch = _batch(*shape)
    tiled = TiledRunner(stand_in, tile=tile, overlap=overlap).run(batch)
    untiled = StandIn().run(batch)
    np.testing.assert_allclose(tiled, untiled, atol=1e-6)
    assert len(stand_in.shapes) > 1
    for n, _, height, width in stand_in.shapes:  # only tiles reached the model, multiples of 4 unless whole
        assert n == shape[0]
        assert height <= tile
        assert width <= tile
        assert height % 4 == 0 or height == shape[1]
        assert width % 4 == 0 or width == shape[2]


def test_scale_two_output_is_stitched_on_the_scaled_grid():
    stand_in = StandIn(scale=2)
    batch = _batch(1, 50, 66)
    tiled = TiledRunner(stand_in, tile=24, overlap=8, scale=2).run(batch)
    assert tiled.shape == (1, 3, 100, 132)
    np.testing.assert_allclose(tiled, StandIn(scale=2).run(batch), atol=1e-6)
    assert len(stand_in.shapes) == 12  # 3 rows x 4 columns


def test_wrong_scale_is_reported():
    with pytest.raises(UserError, match="scale"):
        TiledRunner(StandIn(scale=2), tile=16, overlap=4).run(_batch(1, 40, 40))


def test_images_within_one_tile_run_untiled():
    stand_in = StandIn()
    TiledRunner(stand_in, tile=64, overlap=16).run(_batch(1, 63, 64))
    assert stand_in.shapes == [(1, 3, 63, 64)]


def test_tiles_stay_inside_the_engine_profile():
    profiles = [Profile((1, 3, 8, 8), (1, 3, 16, 16), (1, 3, 20, 20)),
                Profile((1, 3, 16, 16), (1, 3, 32, 32), (1, 3, 38, 46))]
    stand_in = StandIn(profiles=profiles)
    runner = TiledRunner(stand_in, tile=64, overlap=8)
    assert runner.tile_limits() == (36, 44)  # the larger profile's maximum, down to multiples of 4
    batch = _batch(1, 90, 100)
    np.testing.assert_allclose(runner.run(batch), StandIn().run(batch), atol=1e-6)
    assert all(profiles[1].contains(shape) for shape in stand_in.shapes)


def test_profile_that_admits_no_tile_is_refused():
    stand_in = StandIn(profiles=[Profile((1, 3, 64, 64), (1, 3, 64, 64), (1, 3, 128, 128))])
    with pytest.raises(UserError, match="below the engine profile's minimum"):
        TiledRunner(stand_in, tile=32, overlap=8).run(_batch(1, 200, 200))
    with pytest.raises(UserError, match="batch of 2"):
        TiledRunner(stand_in, tile=64, overlap=8).run(_batch(2, 200, 200))


def test_tile_from_memory_budget():
    bytes_per_pixel = 1536.0  # the `small` MIRNet estimate
    edge = tile_for_budget(64, bytes_per_pixel)
    assert edge % 4 == 0
    assert edge**2 * bytes_per_pixel <= 64 * 2**20 < (edge + 4) ** 2 * bytes_per_pixel
    assert tile_for_budget(64, bytes_per_pixel, batch=4) == edge // 2 // 4 * 4
    runner = TiledRunner(StandIn(), memory_budget_mb=1, bytes_per_pixel=bytes_per_pixel, overlap=4)
    assert runner.tile_limits() == (24, 24)  # sqrt(2**20 / 1536) = 26.1
    with pytest.raises(UserError, match="larger than the overlap"):
        TiledRunner(StandIn(), memory_budget_mb=1, bytes_per_pixel=bytes_per_pixel, overlap=24).tile_limits()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tile": 30}, "multiple of 4"),
    ({}, "memory budget"),
])
def test_invalid_tiling_requests(kwargs, message):
    with pytest.raises(UserError, match=message):
        TiledRunner(StandIn(), **kwargs)


def test_seam_psnr_of_the_denoise_demo_model():
    """MIRNet's channel attention pools the whole image, so tiles see other statistics than the
    image: measured 68.5 dB for chelsea at 384x384, tile 192, overlap 32 (47.1 dB without overlap)."""
    from export.graph import DeploymentGraph
    from export.network import load_network
    from mirnet_ref.datasets import builtin_images, image_at_resolution
    from mirnet_ref.degradations import degrade_pair, make_degradation
    from mirnet_ref.weights import default_weights

    network, spec = load_network(default_weights("denoise"), "denoise")
    name, photo = builtin_images("heldout")[0]
    noisy, _ = degrade_pair(make_degradation("denoise"), image_at_resolution(photo, 384, 384),
                            np.random.default_rng((2020, 0)))
    measured = seam_psnr(TorchRunner(DeploymentGraph(network, spec)), noisy, tile=192, overlaps=(0, 32))
    print(f"seam PSNR, {name} 384x384, tile 192: overlap 0 {measured[0]:.2f} dB, "
          f"overlap 32 {measured[32]:.2f} dB")
    assert measured[32] >= 40.0
    assert measured[32] > measured[0] + 6.0, "the blended overlap should hide the seams a butt joint shows"


def test_seam_report_command(tmp_path):
    """`python -m bench.seam_report`: one row per overlap, the same numbers in the table and the JSON."""
    from click.testing import CliRunner

    from bench.seam_report import main

    json_path = tmp_path / "seams.json"
    result = CliRunner().invoke(main, ["--task", "denoise", "--res", "96x64", "--tile", "48",
                                       "--overlaps", "0,16", "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads(json_path.read_text())
    assert [(r["resolution"], r["tile"], r["overlap"]) for r in rows] == [("96x64", 48, 0), ("96x64", 48, 16)]
    for row in rows:
        assert 30.0 < row["psnr_tiled_vs_untiled_db"] < 200.0
        assert f"| {row['overlap']} | {row['psnr_tiled_vs_untiled_db']:.2f} |" in result.output
    bad = CliRunner().invoke(main, ["--overlaps", "0,x"])
    assert bad.exit_code != 0
    assert "comma-separated list of integers" in bad.output
