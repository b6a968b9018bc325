"""Property-based half of the bad-input battery (hypothesis): generated inputs for the image reader
and writer, resolution parsing, optimization profiles and manifest reading. Each property is
"a correct result or our own error", never another exception."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from bad_inputs import outcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines.manifest import EngineManifest, Profile, load_manifest, manifest_path
from engines.tensorrt_build import profiles_from_resolutions
from mirnet_deploy.errors import ImageError, UserError
from mirnet_deploy.resolutions import NAMED_RESOLUTIONS, parse_resolution
from mirnet_ref.images import read_image, write_image

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(height=st.integers(1, 9), width=st.integers(1, 9), depth=st.sampled_from([8, 16]),
       suffix=st.sampled_from([".png", ".tif", ".bmp"]), seed=st.integers(0, 2**32 - 1))
def test_written_images_read_back_exactly(tmp_path_factory, height, width, depth, suffix, seed):
    if suffix == ".bmp" and depth == 16:
        depth = 8
    pixels = np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
    path = tmp_path_factory.mktemp("roundtrip") / f"image{suffix}"
    write_image(path, pixels, depth)
    loaded = read_image(path)
    top = 255 if depth == 8 else 65535
    assert loaded.bit_depth == depth
    np.testing.assert_array_equal(np.round(loaded.pixels * top), np.round(pixels * top))


@FAST
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".png", ".jpg", ".tif", ".webp", ".bmp"]))
def test_arbitrary_bytes_are_an_image_or_an_image_error(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"file{suffix}"
    path.write_bytes(data)
    loaded, message = outcome(read_image, path, error=ImageError)
    assert str(path) in message if loaded is None else np.isfinite(loaded.pixels).all()


_VALID_PNG = {}


def _valid_png(tmp_path: Path) -> bytes:
    if not _VALID_PNG:
        write_image(tmp_path / "valid.png", np.random.default_rng(0).random((12, 10, 3), np.float32), 16)
        _VALID_PNG["data"] = (tmp_path / "valid.png").read_bytes()
    return _VALID_PNG["data"]


@FAST
@given(cut=st.integers(0, 10_000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)),
                                                   max_size=4))
def test_damaged_pngs_are_an_image_or_an_image_error(tmp_path_factory, cut, flips):
    """Truncate a valid 16-bit PNG anywhere and flip bytes anywhere: never another exception."""
    folder = tmp_path_factory.mktemp("damaged")
    data = bytearray(_valid_png(folder))
    for position, mask in flips:
        data[position % len(data)] ^= mask
    path = folder / "damaged.png"
    path.write_bytes(bytes(data[: cut % (len(data) + 1)]))
    loaded, message = outcome(read_image, path, error=ImageError)
    assert str(path) in message if loaded is None else loaded.pixels.shape[2] == 3


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=20) | st.from_regex(r"\s*-?\d{1,6}(x-?\d{1,6})?\s*", fullmatch=True))
def test_resolution_parsing_is_a_size_or_a_user_error(text):
    size, message = outcome(parse_resolution, text, error=UserError)
    if size is None:
        assert repr(text) in message
    else:
        width, height = size
        assert width >= 1
        assert height >= 1
        if text.strip().lower() not in NAMED_RESOLUTIONS:
            assert text.strip().lower() in (f"{width}x{height}", f"{width}")


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(1, 8192), st.integers(1, 8192)), min_size=1, max_size=4),
       batch=st.integers(1, 8), multiple=st.sampled_from([1, 4, 8]))
def test_profiles_are_valid_and_hold_their_resolution(sizes, batch, multiple):
    profiles = profiles_from_resolutions(sizes, batch=batch, size_multiple=multiple)
    assert len(profiles) == len(sizes)
    for profile, (width, height) in zip(profiles, sizes, strict=True):
        shapes = zip(profile.min, profile.opt, profile.max, strict=True)
        assert all(0 < lo <= opt <= hi for lo, opt, hi in shapes)
        assert profile.contains((1, 3, height, width))
        assert profile.contains((batch, 3, height, width))
        assert not profile.contains((batch + 1, 3, height, width))
        assert Profile.from_dict(profile.to_dict()) == profile


def _valid_manifest() -> dict:
    return {"engine_file": "m.ort.onnx", "backend": "onnxruntime", "backend_version": "1.20.0",
            "precision": "fp32", "onnx_path": "m.onnx", "onnx_sha256": "0" * 64,
            "profiles": [{"min": [1, 3, 8, 8], "opt": [1, 3, 16, 16], "max": [1, 3, 16, 16]}],
            "build_options": {}, "build_seconds": 0.5, "built_at": "2026-11-27T00:00:00+00:00",
            "cache_key": "k"}


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.dictionaries(st.sampled_from([*sorted(_valid_manifest()), "format", "parity", "gpu_name"]),
                             _JSON, max_size=3),
       dropped=st.sets(st.sampled_from(sorted(_valid_manifest())), max_size=2))
def test_hand_edited_manifests_load_typed_or_give_a_user_error(tmp_path_factory, edits, dropped):
    engine = tmp_path_factory.mktemp("manifest") / "m.ort.onnx"
    data = {k: v for k, v in {**_valid_manifest(), **edits}.items() if k not in dropped}
    manifest_path(engine).write_text(json.dumps(data))
    manifest, message = outcome(load_manifest, engine, error=UserError)
    if manifest is None:
        assert str(manifest_path(engine)) in message
    else:
        assert isinstance(manifest, EngineManifest)
        assert all(isinstance(getattr(manifest, key), str) for key in ("engine_file", "backend", "cache_key"))
        assert isinstance(manifest.build_seconds, int | float)
        assert all(p.contains(p.opt) for p in manifest.profile_list())
