"""`python -m bench.int8_report`'s options: its targets are the quantizer's registry, and a `--calib` set is
refused before any work unless it was built for the one task asked (the table itself: see the README)."""

from __future__ import annotations

from click.testing import CliRunner

from bench.int8_report import main
from calibration.dataset import build_calibration_set


def test_targets_are_the_quantizers_and_a_wrong_one_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["--targets", "cpu,gpu", "--folder", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "'cpu,gpu': choose among tensorrt, cpu, cpu-symmetric" in result.output
    assert not (tmp_path / "out").exists()


def test_a_calibration_set_of_another_task_or_for_several_tasks_is_refused_before_any_work(tmp_path):
    calib = tmp_path / "denoise.npz"
    build_calibration_set("denoise", calib, count=1, crop=16)
    for tasks in ("enhance", "denoise,sr"):
        result = CliRunner().invoke(main, ["--tasks", tasks, "--calib", str(calib), "--folder",
                                           str(tmp_path / "out")])
        assert result.exit_code == 2
        assert "was built for 'denoise' inputs: pass it with --tasks denoise alone" in result.output
    assert not (tmp_path / "out").exists()


def test_int8_files_are_named_by_code_calibration_set_and_budget(tmp_path, monkeypatch):
    """A file made by older quantization code, another set or another budget is never reused as this one."""
    import bench.int8_report as report

    fp32 = tmp_path / "denoise-abc.fp32.onnx"
    one, other = tmp_path / "one.npz", tmp_path / "other.npz"
    one.write_bytes(b"set one")
    other.write_bytes(b"set two")
    name = report._int8_name(fp32, "cpu", "budget", one, 0.1)
    assert name.startswith("denoise-abc.int8-cpu-budget-")
    assert name.endswith(".onnx")
    assert report._int8_name(fp32, "cpu", "budget", one, 0.1) == name
    assert len({name, report._int8_name(fp32, "cpu", "budget", other, 0.1),
                report._int8_name(fp32, "cpu", "budget", one, 0.2),
                report._int8_name(fp32, "cpu", "plain", one, 0.1)}) == 4
    # the plain model does not depend on the budget
    plain = report._int8_name(fp32, "cpu", "plain", one, 0.1)
    assert plain == report._int8_name(fp32, "cpu", "plain", one, 0.3)
    monkeypatch.setattr(report, "quantization_code_sha256", lambda: "0" * 64)
    assert report._int8_name(fp32, "cpu", "budget", one, 0.1) != name


def test_a_calibration_file_that_is_not_a_set_is_one_line_and_nothing_is_made(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    result = CliRunner().invoke(main, ["--tasks", "denoise", "--calib", str(empty), "--folder",
                                       str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "has no manifest" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
