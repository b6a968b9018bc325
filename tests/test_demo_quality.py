"""The MPRNet deblur demo weights against deconvolution at its best setting: blind, as the model
is (Wiener with the motion distribution's mean kernel), and given the true kernel (Wiener,
Richardson-Lucy), on two crops of the held-out photographs (cheap; the full evaluation is
`mirnet eval --model mprnet --task deblur`, the README's demo table)."""

from __future__ import annotations

import numpy as np
import pytest

from mirnet_ref.baselines import BASELINES
from mirnet_ref.checkpoint import load_model
from mirnet_ref.data_sources import evaluation_pairs
from mirnet_ref.degradations import make_degradation
from mirnet_ref.images import from_tensor, to_tensor
from mirnet_ref.inference import restore
from mirnet_ref.metrics import psnr
from mirnet_ref.weights import default_weights

#: Scored window of each held-out photograph (its centre), and the context every method
#: restores around it so that neither pays for the crop's borders.
WINDOW, CONTEXT = 128, 24
#: PSNR gain over the blurred windows that the demo must keep (dB).
MARGIN = 0.3  # the demo gains 0.39 dB on these windows (0.62 dB on the whole photographs)
#: PSNR the demo must keep above the blind Wiener deconvolution at its best balance (dB).
BLIND_MARGIN = 0.15  # it is 0.25 dB above on these windows (0.32 dB on the whole photographs)


@pytest.fixture(scope="module")
def deblur_scores() -> dict[str, float]:
    """Mean PSNR over the windows: blurred input, the MPRNet demo, each baseline."""
    model = load_model(default_weights("deblur", "mprnet"), "mprnet")
    scores: dict[str, list[float]] = {}
    for pair in evaluation_pairs(make_degradation("deblur")):  # seed 2020, as `mirnet eval`
        top = (pair.target.shape[0] - WINDOW) // 2 - CONTEXT
        left = (pair.target.shape[1] - WINDOW) // 2 - CONTEXT
        region = np.s_[top:top + WINDOW + 2 * CONTEXT, left:left + WINDOW + 2 * CONTEXT]
        blurred, clean = pair.input[region], pair.target[region]
        restored = {"input": blurred, "mprnet": from_tensor(restore(model, to_tensor(blurred)))}
        for name, baseline in BASELINES["deblur"].items():
            restored[name] = baseline(blurred, clean=clean, **pair.known)
        inner = np.s_[CONTEXT:-CONTEXT, CONTEXT:-CONTEXT]
        for name, image in restored.items():
            scores.setdefault(name, []).append(psnr(image[inner], clean[inner]))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def test_mprnet_deblur_demo_deblurs(deblur_scores: dict[str, float]) -> None:
    assert deblur_scores["wiener"] > deblur_scores["input"] + 1.0  # the windows are blurred enough to tell
    assert deblur_scores["mprnet"] > deblur_scores["input"] + MARGIN, deblur_scores


def test_mprnet_deblur_demo_beats_blind_deconvolution(deblur_scores: dict[str, float]) -> None:
    assert deblur_scores["mprnet"] > deblur_scores["wiener-mean-kernel"] + BLIND_MARGIN, deblur_scores


@pytest.mark.xfail(strict=True, reason="known shortfall (README, MPRNet demo models): a blind `small` "
                   "MPRNet trained for minutes on six photographs stays below deconvolution that is "
                   "handed the true kernel; an XPASS means new weights close the gap: drop this mark")
def test_mprnet_deblur_demo_beats_oracle_deconvolution(deblur_scores: dict[str, float]) -> None:
    assert deblur_scores["mprnet"] > deblur_scores["wiener"], deblur_scores
    assert deblur_scores["mprnet"] > deblur_scores["richardson-lucy"], deblur_scores
