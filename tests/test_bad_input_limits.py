"""Bad-input corpus, budgets: inputs that would take the machine's memory or time (a tiny model
declaring a gigapixel input, YAML alias bombs and deep nesting, a Ray address nobody answers).
Each runs the real CLI in a child process held to the corpus's limits (2 GB of address space,
60 s: corpus.run_limited), so a regression fails its test instead of the machine, and must end
in one line naming the file or option (exit 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from corpus import refused_in_one_line, run_limited
from onnx import TensorProto, helper


def declared_input_model(path: Path, height: int | str, width: int | str, dim: int = 512) -> Path:
    """A few-kB embedding model declaring an [N, 3, height, width] input (mean over the pixels,
    then a matrix to `dim`): what it declares is all a budget check may read."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, height, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", dim])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, dim], np.ones((3, dim), np.float32).ravel().tolist())
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0), helper.make_node("MatMul", ["m", "w"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "declared", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return path


# --------------------------------------------------------------------------- class: model input budget


@pytest.fixture(scope="module")
def gigapixel_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = declared_input_model(tmp_path_factory.mktemp("bomb") / "gigapixel.onnx", 10000, 10000)
    assert path.stat().st_size < 10_000  # a few kB on disk, 1.2 GB per input once fed
    return path


def _budget_commands(model: Path, data: Path, out: Path) -> dict[str, list[str]]:
    common = ["--model", str(model), "--data", str(data), "--out", str(out), "--quiet"]
    return {"sweep": ["sweep", *common, "--backends", "fp32", "--distances", "1", "--no-latency"],
            "diagnose": ["diagnose", *common, "--backends", "int8-pt", "--distances", "1"],
            "export-probes": ["export-probes", *common, "--distances", "1"],
            "models check": ["models", "check", str(model), "--data", str(data)],
            "models inspect": ["models", "inspect", str(model)]}


@pytest.mark.parametrize("command", ["sweep", "diagnose", "export-probes", "models check", "models inspect"])
def test_budget__declared_gigapixel_input_refused_before_any_buffer(command: str, gigapixel_model: Path,
                                                                    celebs13: Path, tmp_path: Path):
    result = run_limited(_budget_commands(gigapixel_model, celebs13, tmp_path / "out")[command])
    err = refused_in_one_line(result, str(gigapixel_model), "10000x10000", "FACEQUANT_MAX_INPUT_PIXELS")
    assert "pixels" in err and not (tmp_path / "out").exists()


def test_budget__override_input_size_checked_too(tmp_path: Path, celebs13: Path):
    model = declared_input_model(tmp_path / "symbolic.onnx", "H", "W")  # symbolic sizes: the override decides
    result = run_limited(["sweep", "--model", str(model), "--data", str(celebs13), "--model-override",
                          "input_size=[20000,20000]", "--out", str(tmp_path / "out"), "--quiet"])
    refused_in_one_line(result, str(model), "20000x20000")


@pytest.mark.parametrize("option", ["--batch-size", "--chunk-size"])
def test_budget__derived_buffers_refused_before_they_exist(option: str, tmp_path: Path, celebs13: Path):
    """An input within the cap, times a batch or chunk, can still be more than any buffer
    should hold: said before the first one is made, naming the option to lower."""
    model = declared_input_model(tmp_path / "large.onnx", 1024, 1024)
    result = run_limited(["sweep", "--model", str(model), "--data", str(celebs13), option, "100000",
                          "--backends", "fp32", "--distances", "1", "--out", str(tmp_path / "out"), "--quiet"])
    refused_in_one_line(result, option, "100000", str(model))


def test_budget__cap_is_a_setting(tmp_path: Path):
    """FACEQUANT_MAX_INPUT_PIXELS moves the cap, both ways, and is itself checked."""
    model = declared_input_model(tmp_path / "m.onnx", 112, 112)
    assert run_limited(["models", "inspect", str(model)]).returncode == 0
    refused_in_one_line(run_limited(["models", "inspect", str(model)], env={"FACEQUANT_MAX_INPUT_PIXELS": "10000"}),
                        str(model), "112x112")
    refused_in_one_line(run_limited(["models", "inspect", str(model)], env={"FACEQUANT_MAX_INPUT_PIXELS": "lots"}),
                        "FACEQUANT_MAX_INPUT_PIXELS")


# --------------------------------------------------------------------------- class: YAML bombs and depth


def alias_bomb(levels: int, key: str = "quiet") -> str:
    """A "billion laughs" config: 9**levels items from a few hundred bytes, under one key."""
    anchors = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    anchors += [f"&a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return f"{key}: [{', '.join(anchors)}]\n"


@pytest.mark.parametrize("levels", [6, 9])
@pytest.mark.parametrize("key", ["quiet", "seed", "distances"])
def test_yaml__alias_bomb_refused_in_one_short_line(levels: int, key: str, tmp_path: Path):
    config = tmp_path / "bomb.yaml"
    config.write_text(alias_bomb(levels, key))
    assert config.stat().st_size < 600
    err = refused_in_one_line(run_limited(["sweep", "--config", str(config), "--out", str(tmp_path / "r")]),
                              str(config), "alias")
    assert len(err) < 400, len(err)


@pytest.mark.parametrize("depth", [100, 5000])
@pytest.mark.parametrize("style", ["flow", "block"])
def test_yaml__deep_nesting_refused(depth: int, style: str, tmp_path: Path):
    config = tmp_path / "deep.yaml"
    if style == "flow":
        config.write_text("seed: " + "[" * depth + "1" + "]" * depth + "\n")
    else:
        config.write_text("seed:\n" + "".join(" " * i + "-\n" for i in range(depth)) + " " * depth + "1\n")
    err = refused_in_one_line(run_limited(["sweep", "--config", str(config), "--out", str(tmp_path / "r")]),
                              str(config), "nested")
    assert len(err) < 400


def test_yaml__duplicate_key_names_key_file_and_line(tmp_path: Path):
    config = tmp_path / "twice.yaml"
    config.write_text("seed: 1\nfar: 0.01\nseed: 7\n")
    refused_in_one_line(run_limited(["sweep", "--config", str(config), "--out", str(tmp_path / "r")]),
                        f"{config}:3", "duplicate key 'seed'", "line 1")


READERS = {  # every other YAML file facequant reads: the function, called on the file
    "scenario": "from facequant.analysis.recommend.scenarios import load_scenario_file as read",
    "device profile": "from facequant.backends.cost import load_device_profile as read",
    "name map": "from facequant.backends.quantize.export import load_name_map as read",
    "camera presets": "from facequant.simulate.camera import load_cameras as read",
}
_READ = """{}
import sys
from facequant.errors import FacequantError
try:
    read(sys.argv[1])
except FacequantError as exc:
    sys.exit(f"refused: {{exc}}")
print("read")
"""


@pytest.mark.parametrize("reader", list(READERS))
def test_yaml__other_readers_refuse_bombs(reader: str, tmp_path: Path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(9, "device"))
    result = run_limited([str(bomb)], code=_READ.format(READERS[reader]))
    err = result.stderr.strip()
    assert result.returncode == 1 and err.startswith("refused: ") and len(err.splitlines()) == 1, err[-2000:]
    assert str(bomb) in err and "alias" in err and len(err) < 400, err[-2000:]


def test_yaml__long_value_is_not_echoed_whole(tmp_path: Path):
    config = tmp_path / "long.yaml"
    config.write_text("quiet: " + "x" * 200_000 + "\n")
    err = refused_in_one_line(run_limited(["sweep", "--config", str(config), "--out", str(tmp_path / "r")]),
                              str(config), "quiet")
    assert len(err) < 400


# --------------------------------------------------------------------------- class: Ray addresses nobody answers


def _ray_sweep(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", "--model", str(model), "--data", str(data), "--backends", "fp32,int8-pt", "--distances", "1",
            "--no-latency", "--quiet", "--executor", "ray", "--out", str(out), *extra]


@pytest.mark.parametrize("address", ["127.0.0.1:1", "192.0.2.1:6379"], ids=["refused", "unroutable"])
def test_ray__unanswered_address_is_one_line_within_the_time_out(address: str, tmp_path: Path, model_path: Path,
                                                                  celebs13: Path):
    pytest.importorskip("ray", reason="the [ray] extra (CI installs it)")
    import time

    t0 = time.monotonic()
    result = run_limited(_ray_sweep(model_path, celebs13, tmp_path / "out", "--ray-address", address,
                                    "--ray-timeout", "5"))
    err = refused_in_one_line(result, f"--ray-address {address}")
    assert time.monotonic() - t0 < 40, "the time-out bounds the whole attempt"  # generous: a shared, loaded machine
    assert "rpc_client" not in err and "GCS" not in result.stdout and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ray__default_time_out_bounds_the_attempt(tmp_path: Path, model_path: Path, celebs13: Path):
    pytest.importorskip("ray", reason="the [ray] extra (CI installs it)")
    result = run_limited(_ray_sweep(model_path, celebs13, tmp_path / "out", "--ray-address", "192.0.2.1:6379"))
    refused_in_one_line(result, "--ray-address 192.0.2.1:6379", "--ray-timeout")


def test_ray__connection_is_tried_before_any_work(tmp_path: Path, model_path: Path, celebs13: Path,
                                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("ray", reason="the [ray] extra (CI installs it)")
    from corpus import one_line_error

    from facequant.cli import main

    monkeypatch.setattr("facequant.sweep.engine.prepare_probes", lambda *a, **k: pytest.fail("work started"))
    assert main(_ray_sweep(model_path, celebs13, tmp_path / "out", "--ray-address", "127.0.0.1:1",
                           "--ray-timeout", "5")) == 2
    one_line_error(capsys, "--ray-address 127.0.0.1:1")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", "100000"])
def test_ray__time_out_option_checked_where_parsed(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from corpus import one_line_error

    from facequant.cli import main

    assert main(["sweep", "--ray-timeout", value, "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "argument --ray-timeout")
