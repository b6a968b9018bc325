"""The inference helper: any H, W from 1 pixel, batches, bfloat16, clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mirnet_deploy.errors import ImageError
from mirnet_ref.inference import pad_to_multiple, restore
from mirnet_ref.presets import build_preset


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_preset("small").eval()


@pytest.mark.parametrize(("height", "width"), [(5, 7), (9, 4), (6, 30)])
def test_padding_equals_reflect_pad_when_reflect_is_possible(height, width):
    x = torch.rand(1, 3, height, width)
    pad_h, pad_w = (-height) % 4, (-width) % 4
    expected = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    assert torch.equal(pad_to_multiple(x, 4), expected)


def test_padding_tiny_images_repeats_the_reflection():
    x = torch.tensor([[[[1.0, 2.0]]]])  # 1x2
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 4)
    assert padded[0, 0, 0].tolist() == [1.0, 2.0, 1.0, 2.0]
    assert torch.equal(padded[0, 0, 1:], padded[0, 0, :1].expand(3, 4))


@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 3), (3, 5), (45, 71), (16, 16)])
def test_restore_any_size(model, height, width):
    x = torch.rand(3, height, width)
    y = restore(model, x)
    assert y.shape == x.shape
    assert y.min() >= 0.0
    assert y.max() <= 1.0


def test_restore_matches_model_on_multiples_of_four(model):
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        expected = model(x).clamp(0, 1)
    torch.testing.assert_close(restore(model, x), expected, rtol=0, atol=0)


def test_restore_crops_what_padding_added(model):
    x = torch.rand(1, 3, 13, 18)
    with torch.no_grad():
        expected = model(pad_to_multiple(x, 4))[..., :13, :18].clamp(0, 1)
    assert torch.equal(restore(model, x), expected)


def test_batch_equals_single_images(model):
    x = torch.rand(2, 3, 10, 14)
    batched = restore(model, x)
    for i in range(2):
        torch.testing.assert_close(batched[i], restore(model, x[i]), rtol=0, atol=1e-6)


def test_bfloat16_on_cpu(model):
    x = torch.rand(1, 3, 20, 20)
    reference = restore(model, x)
    low = build_preset("small")
    low.load_state_dict(model.state_dict())
    low = low.eval().to(torch.bfloat16)
    y = restore(low, x)
    assert y.dtype == torch.float32
    assert (y - reference).abs().max() < 0.05


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (torch.rand(1, 4, 8, 8), "3-channel"),
        (torch.rand(8, 8), "CxHxW"),
        (torch.full((3, 8, 8), float("nan")), "NaN"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), "float tensor"),
    ],
)
def test_bad_inputs_are_named(model, tensor, message):
    with pytest.raises(ImageError, match=message):
        restore(model, tensor)
