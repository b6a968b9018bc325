"""Classical baselines that the README compares MIRNet against, each in its best honest case.

Every baseline is `fn(degraded, **known) -> restored` on float32 HxWx3 RGB in [0, 1] (for an
input of more channels, the photograph it shows: `degradations.picture_of`);
`known` carries what the experiment knows about the degradation (e.g. the true noise
sigma) and baselines ignore keys they do not use, so an evaluation loop can call them
all alike. `BASELINES[task]` lists them by name. The deconvolutions and the gamma search import
their scipy parts where they run: `mirnet eval --task denoise` (non-local means) needs none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from skimage.exposure import equalize_adapthist
from skimage.restoration import denoise_nl_means

from mirnet_deploy.cpus import usable_cpus
from mirnet_deploy.errors import UserError

from .images import check_rgb

_MAX_LOG_GAMMA = 10.0


def best_of(run: Callable[[float], np.ndarray], settings: Sequence[float], clean: np.ndarray,
            threads: int = 1) -> np.ndarray:
    """The oracle best case: `run(setting)` for every setting, the one closest to `clean` (MSE; the
    first of equals). `threads` > 1 runs the settings side by side, worth it only for a `run` that
    releases the GIL; the candidates and the choice are the same either way."""
    if threads > 1:
        with ThreadPoolExecutor(max_workers=min(threads, len(settings))) as pool:
            candidates = list(pool.map(run, settings))
    else:
        candidates = [run(setting) for setting in settings]
    return min(candidates, key=lambda x: float(np.mean((x - clean) ** 2)))


#: h / sigma values tried by the oracle NLM (scikit-image recommends 0.8 for a known sigma).
NLM_H_FACTORS = (0.4, 0.6, 0.8, 1.0)


def nl_means(
    degraded: np.ndarray, *, sigma: float, clean: np.ndarray | None = None, **_known: object
) -> np.ndarray:
    """Non-local means given the true noise std `sigma` ([0, 1] units; for noise without a
    single sigma, pass the measured std of noisy - clean): fast mode, 5x5 patches searched 6
    pixels away, h = 0.8 sigma as scikit-image recommends. With `clean` given, the best of
    h in NLM_H_FACTORS x sigma is returned (the oracle best case a model must beat), its four runs
    on every core this process may use: scikit-image's non-local means releases the GIL, and
    `mirnet eval` otherwise ran them one after another on one core."""
    check_rgb(degraded, "The image to denoise")

    def run(h_factor: float) -> np.ndarray:
        restored = denoise_nl_means(degraded, h=h_factor * sigma, sigma=sigma, fast_mode=True,
                                    patch_size=5, patch_distance=6, channel_axis=-1,
                                    preserve_range=True)
        return np.clip(restored, 0.0, 1.0).astype(np.float32)

    if clean is None:
        return run(0.8)
    return best_of(run, NLM_H_FACTORS, clean, threads=usable_cpus())


#: Wiener balances tried by the oracle (1-2-5 steps). With scikit-image's Laplacian regulariser
#: the balance its oracle SNR gives is sigma^2 / mean((Laplacian * clean)^2): 0.016 and 0.0055 on
#: the held-out photographs at sigma 0.01, both inside this grid and 0.2-0.9 dB below its best.
WIENER_BALANCES = (1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1, 2e-1, 5e-1)
#: Richardson-Lucy iteration counts tried by the oracle (past ~40 it amplifies the noise).
RL_ITERATIONS = (5, 10, 15, 20, 30, 40, 60)


def _deconvolve_channels(degraded: np.ndarray, kernel: np.ndarray,
                         deconvolve: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """`deconvolve(channel, kernel)` per channel on the image reflect-padded by the kernel size
    (the blur reflected at the borders too), cropped back: FFT wrap-around and zero borders
    then stay outside the picture."""
    pad = max(kernel.shape)
    padded = np.pad(np.clip(degraded, 0.0, 1.0).astype(np.float64), ((pad, pad), (pad, pad), (0, 0)),
                    mode="reflect")
    restored = np.stack([deconvolve(padded[:, :, c], kernel) for c in range(3)], axis=-1)
    return np.clip(restored[pad:-pad, pad:-pad], 0.0, 1.0).astype(np.float32)


def _true_kernel(kernel: np.ndarray | None) -> np.ndarray:
    if kernel is None:
        raise UserError("Deconvolution baselines need the blur kernel (the true one or its distribution's "
                        "mean), which only synthetic pairs carry (the built-in or a clean folder); pass "
                        "--no-baselines for paired folders.")
    return np.asarray(kernel, np.float64)


def wiener_deconvolution(degraded: np.ndarray, *, kernel: np.ndarray | None = None,
                         clean: np.ndarray | None = None, **_known: object) -> np.ndarray:
    """Wiener deconvolution with the TRUE blur kernel (scikit-image, balance 1e-2). With
    `clean` given, the best balance of WIENER_BALANCES per image (the oracle best case)."""
    from skimage.restoration import wiener  # here (as richardson_lucy): it imports scipy.signal, ~1 CPU-s

    check_rgb(degraded, "The image to deblur")
    psf = _true_kernel(kernel)

    def run(balance: float) -> np.ndarray:
        return _deconvolve_channels(degraded, psf, lambda x, k: wiener(x, k, balance, clip=False))

    return run(1e-2) if clean is None else best_of(run, WIENER_BALANCES, clean)


def richardson_lucy_deconvolution(degraded: np.ndarray, *, kernel: np.ndarray | None = None,
                                  clean: np.ndarray | None = None, **_known: object) -> np.ndarray:
    """Richardson-Lucy deconvolution with the TRUE blur kernel (scikit-image, 10 iterations).
    With `clean` given, the best iteration count of RL_ITERATIONS per image (oracle)."""
    from skimage.restoration import richardson_lucy

    check_rgb(degraded, "The image to deblur")
    psf = _true_kernel(kernel)

    def run(iterations: float) -> np.ndarray:
        return _deconvolve_channels(degraded, psf,
                                    lambda x, k: richardson_lucy(x, k, num_iter=int(iterations), clip=False))

    return run(10) if clean is None else best_of(run, RL_ITERATIONS, clean)


def blind_wiener_deconvolution(degraded: np.ndarray, *, mean_kernel: np.ndarray | None = None,
                               clean: np.ndarray | None = None, **_known: object) -> np.ndarray:
    """Wiener deconvolution with the blur distribution's MEAN kernel instead of this image's: the
    classical counterpart of a blind model, which knows the kind of blur but not the draw. With
    `clean` given, the best balance of WIENER_BALANCES per image (the blind oracle best case)."""
    return wiener_deconvolution(degraded, kernel=mean_kernel, clean=clean)


def gamma_correct(
    degraded: np.ndarray, *, target_mean: float = 0.5, **_known: object
) -> np.ndarray:
    """Brighten with the single power law out = in**g whose output mean equals `target_mean`
    (mid-grey by default; pass the clean image's mean for the oracle case). g is found by
    root finding, since mean(in**g) != mean(in)**g."""
    check_rgb(degraded, "The image to enhance")
    if not 0 < target_mean < 1:
        raise UserError(f"The gamma baseline's target_mean must be in (0, 1), got {target_mean}.")
    pixels = np.clip(degraded, 0.0, 1.0).astype(np.float64)
    sample = pixels[::4, ::4]  # the mean of a 1/16 subsample fixes g to well under 1%

    def excess(log_g: float) -> float:  # decreasing in log_g
        return float(np.mean(sample ** np.exp(log_g))) - target_mean

    # Search g in [e^-10, e^10]; if no g there reaches the target (e.g. black pixels stay
    # black whatever g, so a mostly black image cannot reach mid-grey), take the closest end.
    low, high = -_MAX_LOG_GAMMA, _MAX_LOG_GAMMA
    if excess(low) <= 0:
        log_g = low
    elif excess(high) >= 0:
        log_g = high
    else:
        from scipy.optimize import brentq

        log_g = brentq(excess, low, high)
    return (pixels ** np.exp(log_g)).astype(np.float32)


def clahe(degraded: np.ndarray, **_known: object) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (scikit-image defaults: 1/8-image tiles,
    clip limit 0.01) on the HSV value channel, so hues are kept."""
    check_rgb(degraded, "The image to enhance")
    return equalize_adapthist(np.clip(degraded, 0.0, 1.0)).astype(np.float32)


def bicubic(degraded: np.ndarray, **_known: object) -> np.ndarray:
    """The SR input itself: RealSR v1 inputs are already bicubic-upsampled to the HR size."""
    check_rgb(degraded, "The SR input")
    return np.clip(degraded, 0.0, 1.0).astype(np.float32)


Baseline = Callable[..., np.ndarray]
BASELINES: dict[str, dict[str, Baseline]] = {
    "denoise": {"nl-means": nl_means},
    "enhance": {"gamma": gamma_correct, "clahe": clahe},
    "sr": {"bicubic": bicubic},
    # Non-blind oracles given the true kernel (the ceiling that knowing it gives), and the blind
    # counterpart of a blind model: Wiener with the distribution's mean kernel.
    "deblur": {"wiener": wiener_deconvolution, "richardson-lucy": richardson_lucy_deconvolution,
               "wiener-mean-kernel": blind_wiener_deconvolution},
    "derain": {},
    # Dual-pixel defocus: the views' mean is the ordinary defocused photo, deconvolved with the true disk.
    "defocus": {"wiener": wiener_deconvolution, "richardson-lucy": richardson_lucy_deconvolution,
                "wiener-mean-kernel": blind_wiener_deconvolution},
}
