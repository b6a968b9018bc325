"""`bench.deblur_gap`: the non-blind deblur experiment behind the README's MPRNet demo paragraph."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bench.deblur_gap import FixedMotionBlur, main
from mirnet_ref.degradations import MotionBlur, mean_kernel, oracle_facts


def test_the_fixed_blur_draws_one_kernel_whatever_the_stream() -> None:
    blur = FixedMotionBlur(length=(9.0, 9.0), kernel_seed=1)
    expected = MotionBlur(length=(9.0, 9.0)).kernel(np.random.default_rng(1))
    for seed in (0, 5, 2020):
        np.testing.assert_array_equal(oracle_facts(blur, np.random.default_rng(seed))["kernel"], expected)
    np.testing.assert_allclose(mean_kernel(blur), expected, atol=1e-12)
    assert not np.array_equal(FixedMotionBlur(length=(9.0, 9.0), kernel_seed=2).kernel(None), expected)
    photo = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    first, second = (blur.apply(photo, np.random.default_rng(s)) for s in (3, 4))
    # Two draws differ by their noise alone (sigma 0.01 each), not by their blur.
    assert float((first - second).std()) == pytest.approx(0.01 * np.sqrt(2), rel=0.15)


def test_bad_options_get_one_line_and_train_nothing(tmp_path) -> None:
    too_long = CliRunner().invoke(main, ["--length", "20", "--output", str(tmp_path / "run")])
    assert too_long.exit_code == 1
    assert "motion length" in too_long.output
    assert "Traceback" not in too_long.output
    assert not (tmp_path / "run").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = ["--output", str(tmp_path / "run")]
    for where in (["--output", str(blocker / "run")], [*run, "--md", str(blocker / "t.md")]):
        unwritable = CliRunner().invoke(main, where)
        assert unwritable.exit_code == 1
        assert "Cannot write" in unwritable.output
        assert "Traceback" not in unwritable.output
        assert not (tmp_path / "run").exists()  # refused before training
    none = CliRunner().invoke(main, ["--iterations", "0", "--output", str(tmp_path / "run")])
    assert none.exit_code == 2
    assert "--iterations" in none.output


@pytest.mark.slow
def test_a_short_run_scores_every_column_on_the_held_out_photographs(tmp_path) -> None:
    out = tmp_path / "rows.json"
    arguments = ["--iterations", "2", "--val-every", "2", "--output", str(tmp_path / "run"),
                 "--json", str(out)]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [row["image"] for row in rows] == ["chelsea", "motorcycle", "mean"]
    for row in rows:
        assert row["wiener_true_kernel"] > row["input"] + 1.0  # the oracle, given the kernel, deblurs
        assert np.isfinite(row["trained_on_kernel"])
    assert "| 9 px (seed 1) | no | 2 | mean |" in result.output
