"""The README's tried-as-a-user case through the real `mirnet` executable, and a full disk.

A folder with good 8- and 16-bit photographs and the bad files users meet (empty, random bytes,
a truncated JPEG, a PNG with a bad IHDR CRC, a decompression bomb): exit status 1, every bad
file named, the good ones restored at their bit depth, the inputs byte-identical. (Its peak
memory is measured with /usr/bin/time -v and reported in the README, not asserted here.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import SUBPROCESS_ENV, bad_ihdr_crc, hashes, leftovers, png_bomb, scale_model

from mirnet_ref.datasets import builtin_images, image_at_resolution
from mirnet_ref.images import read_image, write_image

MIRNET = str(Path(sys.executable).with_name("mirnet"))


def make_user_folder(folder: Path) -> set[str]:
    """good8.png, good16.png, photo.jpg and five bad files; returns the bad files' names."""
    folder.mkdir(parents=True)
    photo = image_at_resolution(builtin_images("heldout")[0][1], 48, 40)
    write_image(folder / "good8.png", photo, 8)
    write_image(folder / "good16.png", photo[::-1], 16)
    write_image(folder / "photo.jpg", photo, 8)
    jpeg = (folder / "photo.jpg").read_bytes()
    png = (folder / "good8.png").read_bytes()
    bad = {"empty.jpg": b"", "random.png": np.random.default_rng(1).bytes(3000),
           "truncated.jpg": jpeg[: len(jpeg) // 2], "bad_crc.png": bad_ihdr_crc(png),
           "bomb.png": png_bomb(20000)}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return set(bad)


def test_infer_on_a_folder_of_good_and_bad_files(tmp_path: Path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    bad = make_user_folder(inputs)
    before = hashes(inputs)
    run = subprocess.run([MIRNET, "infer", "-i", str(inputs), "-o", str(out), "--task", "denoise"],
                         capture_output=True, text=True, timeout=300, env=SUBPROCESS_ENV)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert "restored 3 of 8 images" in run.stdout
    failed = run.stdout.split("failed 5:")[1]
    for name in bad:
        assert f"  {name}: " in failed, name
    assert "20000x20000" in failed  # the bomb was refused from its header, with its dimensions
    assert sorted(p.name for p in out.iterdir()) == ["good16_denoise.png", "good8_denoise.png",
                                                     "photo_denoise.jpg"]
    assert read_image(out / "good16_denoise.png").bit_depth == 16
    assert read_image(out / "good8_denoise.png").bit_depth == 8
    assert hashes(inputs) == before


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 1 MiB tmpfs mounted for the test (CI runs as root); skipped with the reason elsewhere."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8); CI runs as root")
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"this container may not mount a tmpfs: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_gives_a_clear_error_and_no_half_written_file(small_tmpfs: Path, tmp_path: Path):
    model = tmp_path / "scale.onnx"
    model.write_bytes(scale_model().SerializeToString())
    big = tmp_path / "in" / "big.png"  # noise does not compress: about 1.5 MB as a 16-bit PNG
    write_image(big, np.random.default_rng(0).random((512, 512, 3), np.float32), 16)
    run = subprocess.run([MIRNET, "infer", "-i", str(big), "-o", str(small_tmpfs), "--model", str(model)],
                         capture_output=True, text=True, timeout=300, env=SUBPROCESS_ENV)
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert f"Cannot write {small_tmpfs / 'big_denoise.png'}: No space left on device" in run.stdout
    assert list(small_tmpfs.iterdir()) == []
    run = subprocess.run([MIRNET, "calibrate", "--task", "denoise", "--count", "8", "--crop", "128", "-o",
                          str(small_tmpfs / "set.npz")], capture_output=True, text=True, timeout=300,
                         env=SUBPROCESS_ENV)
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert "No space left on device" in run.stderr
    assert list(small_tmpfs.iterdir()) == []
    assert not leftovers(small_tmpfs)
