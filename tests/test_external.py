"""Hardware in the loop: export-probes writes the sweep's exact inputs; a device's embeddings
come back as external:NAME=PATH and are checked before any results are written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from facequant.backends.external import MANIFEST_COLUMNS, ExternalBackend
from facequant.cli import main
from facequant.errors import FacequantError
from facequant.models.normalize import normalize_model
from facequant.models.spec import ModelSpec, inspect_model
from facequant.sweep.probes import probe_id

DISTANCES = "1,6"
SETS = ("enrol", "probe_1m", "probe_6m")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, model_path: Path, celebs13: Path) -> Path:
    out = tmp_path_factory.mktemp("export") / "probes"
    assert main(["export-probes", "--model", str(model_path), "--data", str(celebs13), "--distances", DISTANCES,
                 "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory, export_dir: Path, model_path: Path) -> dict[str, Path]:
    """Runs the float model on the exported tensors as a device would (it sees only the NPY files)
    and brings the embeddings back in each accepted layout."""
    from facequant.backends.runtime import OrtBackend

    root = tmp_path_factory.mktemp("device")
    runner = OrtBackend("device", normalize_model(model_path), inspect_model(model_path))
    per_set = {name: runner.run(np.load(export_dir / f"{name}.npy")) for name in SETS}
    manifest = pd.read_csv(export_dir / "manifest.csv", keep_default_na=False)
    rows = np.stack([per_set[r.npy[:-4]][r.row] for r in manifest.itertuples()])

    folder = root / "per-set"  # layout 1: <set>.emb.npy beside manifest.csv (+ manifest.json)
    folder.mkdir()
    shutil.copy(export_dir / "manifest.csv", folder)
    shutil.copy(export_dir / "manifest.json", folder)
    for name, emb in per_set.items():
        np.save(folder / f"{name}.emb.npy", emb)
    whole = root / "whole"  # layout 2: embeddings.npy in manifest.csv order
    whole.mkdir()
    shutil.copy(export_dir / "manifest.csv", whole)
    np.save(whole / "embeddings.npy", rows[:, None, :])  # a [N, 1, D] output: singleton axis dropped
    table = pd.DataFrame(rows, columns=[f"e{i}" for i in range(rows.shape[1])])
    table.insert(0, "id", manifest.id)
    csv = root / "device.csv"  # layout 3
    table.to_csv(csv, index=False, float_format="%.9g")  # 9 digits: float32 survives the text round trip
    npz = root / "device.npz"  # layout 4
    np.savez(npz, ids=manifest.id.to_numpy().astype(str), embeddings=rows)
    return {"per-set": folder, "whole": whole, "csv": csv, "npz": npz, "table": csv}


# --------------------------------------------------------------------------- export


def test_export_writes_consistent_files(export_dir: Path, celebs13: Path):
    manifest = pd.read_csv(export_dir / "manifest.csv", keep_default_na=False)
    meta = json.loads((export_dir / "manifest.json").read_text())
    run = json.loads((export_dir / "run.json").read_text())  # a results directory like every command's
    assert run["command"] == "export-probes" and run["config"]["distances_m"] == [1.0, 6.0]
    assert run["manifest"] == "manifest.json" and run["versions"]["onnxruntime"]
    assert list(manifest.columns) == MANIFEST_COLUMNS
    n = 61  # every celebs13 photo aligns
    assert len(manifest) == 3 * n and manifest.id.is_unique
    assert manifest.groupby("npy").size().to_dict() == {f"{s}.npy": n for s in SETS}
    assert (manifest.kind == "enrol").sum() == n and (manifest[manifest.kind == "enrol"].distance_m == "").all()
    assert sorted(manifest[manifest.kind == "probe"].distance_m.astype(float).unique()) == [1.0, 6.0]
    for row in manifest.itertuples():
        d = None if row.kind == "enrol" else float(row.distance_m)
        assert row.id == probe_id(row.image, d)
        assert (export_dir / row.png).is_file()
    assert meta["input"]["layout"] == "NCHW" and meta["input"]["channel_order"] == "RGB"
    assert meta["model"]["sha256"] and meta["model"]["spec"]["embedding_dim"] == 512
    assert meta["camera"]["name"] == "1080p-90" and meta["config"]["distances_m"] == [1.0, 6.0]
    assert "external:NAME=PATH" in meta["readme"] and (export_dir / "README.txt").read_text() == meta["readme"]
    for tensor in meta["tensors"]:
        x = np.load(export_dir / tensor["npy"])
        assert x.dtype == np.float32 and x.shape == (n, 3, 112, 112) == tuple(tensor["shape"])
        rows = manifest[manifest.npy == tensor["npy"]].sort_values("row")
        assert tensor["ids"] == rows.id.tolist() and rows.row.tolist() == list(range(n))
        assert len(list((export_dir / "png" / tensor["npy"][:-4]).glob("*.png"))) == n


def test_npy_is_the_preprocessed_png(export_dir: Path, model_path: Path):
    from facequant.backends.base import preprocess

    spec = inspect_model(model_path)
    manifest = pd.read_csv(export_dir / "manifest.csv", keep_default_na=False)
    for npy, rows in manifest.groupby("npy"):
        rows = rows.sort_values("row")
        crops = np.stack([cv2.cvtColor(cv2.imread(str(export_dir / p)), cv2.COLOR_BGR2RGB) for p in rows.png])
        assert crops.shape[1:] == (112, 112, 3)
        assert np.abs(preprocess(crops, spec) - np.load(export_dir / str(npy))).max() <= 1 / 128


def test_readme_loop__run_twice_brings_back_one_file_per_tensor(export_dir: Path, tmp_path: Path, model_path: Path):
    """README.txt's device loop, run as written twice in the export folder (a device script
    re-run after a failure): each tensor's embeddings once, nothing fed back in. `glob("*.npy")`
    would pick up the first run's *.emb.npy files and write *.emb.emb.npy (issue 19)."""
    from facequant.backends.runtime import OrtBackend

    folder = tmp_path / "device"
    shutil.copytree(export_dir, folder)
    loop = [line.strip() for line in (folder / "README.txt").read_text().splitlines() if line.strip().startswith("for ")]
    assert len(loop) == 1 and "glob(" not in loop[0]
    runner = OrtBackend("device", normalize_model(model_path), inspect_model(model_path))
    for _ in range(2):
        cwd = Path.cwd()
        os.chdir(folder)
        try:
            exec(loop[0], {"json": json, "np": np, "run_model": runner.run})  # noqa: S102 - the README's own line
        finally:
            os.chdir(cwd)
    brought = sorted(p.name for p in folder.glob("*.emb.npy"))
    assert brought == sorted(f"{name}.emb.npy" for name in SETS)
    backend = ExternalBackend.load("dev", folder, inspect_model(model_path))  # the sweep accepts the folder
    manifest = pd.read_csv(folder / "manifest.csv", keep_default_na=False)
    ids = manifest[manifest.npy == "probe_6m.npy"].sort_values("row").id.tolist()
    assert np.array_equal(backend.embed_probes(None, ids), np.load(folder / "probe_6m.emb.npy"))

@pytest.mark.slow
def test_export_refuses_an_existing_folder(export_dir: Path, tmp_path: Path, model_path: Path, celebs13: Path,
                                           capsys: pytest.CaptureFixture[str]):
    before = (export_dir / "manifest.csv").read_bytes()
    assert main(["export-probes", "--out", str(export_dir), "--distances", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(export_dir) in err and "--force" in err and len(err.splitlines()) == 1
    assert (export_dir / "manifest.csv").read_bytes() == before
    out = tmp_path / "again"
    shutil.copytree(export_dir, out)  # an export facequant wrote (its marker lists every file)
    assert main(["export-probes", "--model", str(model_path), "--data", str(celebs13), "--distances", "2",
                 "--out", str(out), "--force", "--quiet"]) == 0
    assert not (out / "probe_1m.npy").exists() and (out / "probe_2m.npy").is_file()
    assert "probe_2m.npy" in json.loads((out / ".facequant.json").read_text())["files"]
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no staging folder left behind


# --------------------------------------------------------------------------- round trip


@pytest.mark.slow
def test_device_embeddings_reproduce_fp32_exactly(device: dict[str, Path], tmp_path: Path, model_path: Path,
                                                   celebs13: Path):
    externals = {name: f"external:{name}={device[name]}" for name in ("csv", "npz", "per-set", "whole")}
    out = tmp_path / "run"
    assert main(["sweep", "--model", str(model_path), "--data", str(celebs13), "--distances", DISTANCES,
                 "--backends", ",".join(["fp32", *externals.values()]), "--out", str(out), "--quiet"]) == 0
    sweep = pd.read_csv(out / "sweep.csv")
    probes = pd.read_csv(out / "probes.csv")
    fp32 = sweep[sweep.backend == "fp32"].drop(columns="backend").reset_index(drop=True)
    fp32_probes = probes[probes.backend == "fp32"].drop(columns="backend").reset_index(drop=True)
    assert set(sweep.backend) == {"fp32", *externals.values()}
    for backend in externals.values():
        rows = sweep[sweep.backend == backend].drop(columns="backend").reset_index(drop=True)
        assert np.allclose(rows.cos_to_fp32_mean, 1.0, atol=1e-6)
        pd.testing.assert_frame_equal(rows.drop(columns="cos_to_fp32_mean"), fp32.drop(columns="cos_to_fp32_mean"),
                                      check_exact=True)
        mine = probes[probes.backend == backend].drop(columns="backend").reset_index(drop=True)
        assert (mine.prenorm == fp32_probes.prenorm).all()
    run = json.loads((out / "run.json").read_text())
    described = run["backends"][externals["per-set"]]
    assert described["kind"] == "external" and described["ids_used"] == 3 * 61 and described["extra_ids"] == 0


def test_extra_ids_are_fine_and_counted(device: dict[str, Path], model_path: Path):
    backend = ExternalBackend.from_spec(f"external:dev={device['npz']}", inspect_model(model_path))
    manifest = pd.read_csv(device["per-set"] / "manifest.csv", keep_default_na=False)
    wanted = manifest[manifest.npy == "probe_1m.npy"].id.tolist()
    assert backend.embed_probes(None, wanted[::-1]).shape == (61, 512)
    assert backend.describe()["extra_ids"] == 2 * 61


# --------------------------------------------------------------------------- refusals


def _bad_file(kind: str, device: dict[str, Path], tmp_path: Path) -> tuple[Path, str]:
    table = pd.read_csv(device["table"], keep_default_na=False)
    path = tmp_path / f"{kind}.csv"
    if kind == "dimension":
        table = table.iloc[:, :257]
        expect = "256 values per row"
    elif kind == "missing-ids":
        table = table[~table.id.str.endswith("@6m")]
        expect = "61 id(s) the sweep needs are missing"
    elif kind == "nan":
        table = table.astype({"e7": float})
        table.loc[5, "e7"] = np.nan
        expect = f"1 row(s) hold NaN or infinite values (first 3 ids: {table.id[5]})"
    elif kind == "duplicates":
        table = pd.concat([table, table.iloc[[3]]])
        expect = f"1 duplicate id(s) (first 3: {table.id.iloc[3]})"
    else:
        return tmp_path / "nowhere.csv", "not found"
    table.to_csv(path, index=False, float_format="%.9g", na_rep="nan")
    return path, expect


@pytest.mark.parametrize("kind", ["dimension", "missing-ids", "nan", "duplicates", "missing-file"])
def test_bad_device_files_are_refused_in_one_line(kind: str, device: dict[str, Path], tmp_path: Path, model_path: Path,
                                                  celebs13: Path, capsys: pytest.CaptureFixture[str]):
    bad, expect = _bad_file(kind, device, tmp_path)
    out = tmp_path / "run"
    code = main(["sweep", "--model", str(model_path), "--data", str(celebs13), "--distances", DISTANCES,
                 "--backends", f"fp32,external:dev={bad}", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert str(bad) in err and expect in err, err
    assert not out.exists()


def test_a_tensor_not_run_on_the_device_is_named(device: dict[str, Path], tmp_path: Path, model_path: Path):
    folder = tmp_path / "partial"
    shutil.copytree(device["per-set"], folder)
    (folder / "probe_6m.emb.npy").unlink()
    backend = ExternalBackend.from_spec(f"external:dev={folder}", inspect_model(model_path))
    manifest = pd.read_csv(folder / "manifest.csv", keep_default_na=False)
    backend.embed_probes(None, manifest[manifest.npy == "probe_1m.npy"].id.tolist())  # what was run is served
    with pytest.raises(FacequantError, match=r"probe_6m\.emb\.npy: missing file \(61 id\(s\)"):
        backend.embed_probes(None, manifest[manifest.npy == "probe_6m.npy"].id.tolist())


def test_a_folder_from_another_model_is_refused(device: dict[str, Path], tmp_path: Path, model_path: Path):
    folder = tmp_path / "other"
    shutil.copytree(device["per-set"], folder)
    meta = json.loads((folder / "manifest.json").read_text())
    meta["model"]["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(meta))
    with pytest.raises(FacequantError, match=r"manifest\.json: exported for model sha256 000000000000"):
        ExternalBackend.from_spec(f"external:dev={folder}", inspect_model(model_path))


# --------------------------------------------------------------------------- parsing, no model needed


def _spec(tmp_path: Path, dim: int = 4) -> ModelSpec:
    return ModelSpec(path=str(tmp_path / "m.onnx"), input_name="x", output_name="y", input_size=(112, 112),
                     mean=127.5, std=127.5, channel_order="RGB", embedding_dim=dim, opset=13, batch_dim="batch")


def _refused(spec_text: str, spec: ModelSpec) -> str:
    with pytest.raises(FacequantError) as info:
        ExternalBackend.from_spec(spec_text, spec)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_layouts_parse_and_malformed_input_is_refused(tmp_path: Path):
    spec = _spec(tmp_path)
    good = tmp_path / "good.csv"
    good.write_text("a@enrol,1,2,3,4\n\nb@enrol,0.5,0,0,0\n")  # headerless, a blank line
    backend = ExternalBackend.from_spec(f"external:npu={good}", spec)
    assert backend.name == "npu"
    assert backend.embed_probes(None, ["b@enrol", "a@enrol"]).tolist() == [[0.5, 0, 0, 0], [1, 2, 3, 4]]

    assert "expected external:NAME=PATH" in _refused(f"external:{good}", spec)
    assert "built-in backend" in _refused(f"external:fp32={good}", spec)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("id,e0,e1,e2,e3\na,1,2,3,4\nb,1,2\n")
    assert f"{ragged}: line 3 has 3 columns" in _refused(f"external:x={ragged}", spec)
    words = tmp_path / "words.csv"
    words.write_text("a,1,2,3,oops\n")
    assert f"{words}: not a CSV" in _refused(f"external:x={words}", spec)
    bare = tmp_path / "e.npy"
    np.save(bare, np.zeros((2, 4)))
    assert "holds no ids" in _refused(f"external:x={bare}", spec)
    other = tmp_path / "e.txt"
    other.write_text("x")
    assert "unsupported file type" in _refused(f"external:x={other}", spec)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    assert f"{junk}: cannot read as .npz" in _refused(f"external:x={junk}", spec)
    keys = tmp_path / "keys.npz"
    np.savez(keys, names=np.array(["a"]), embeddings=np.zeros((1, 4)))
    assert "needs arrays 'ids' and 'embeddings'" in _refused(f"external:x={keys}", spec)
    objects = tmp_path / "objects.npz"
    np.savez(objects, ids=np.array(["a", None], dtype=object), embeddings=np.zeros((2, 4)))
    assert f"{objects}: cannot read as .npz" in _refused(f"external:x={objects}", spec)
    short = tmp_path / "short.npz"
    np.savez(short, ids=np.array(["a", "b"]), embeddings=np.zeros((3, 4)))
    assert "shape [3, 4], expected [2, D]" in _refused(f"external:x={short}", spec)
    unit = tmp_path / "unit.npz"
    np.savez(unit, ids=np.array(["a", "b"]), embeddings=np.eye(2, 4))
    assert "already L2-normalised" in str(ExternalBackend.from_spec(f"external:x={unit}", spec).describe()["note"])


def test_folder_layouts_are_checked(tmp_path: Path):
    spec = _spec(tmp_path)
    folder = tmp_path / "run"
    folder.mkdir()
    assert "manifest.csv: missing file" in _refused(f"external:x={folder}", spec)
    pd.DataFrame({"id": ["a@enrol", "b@enrol"], "npy": "enrol.npy", "row": [0, 1]}).to_csv(folder / "manifest.csv", index=False)
    assert "no embeddings found" in _refused(f"external:x={folder}", spec)
    np.save(folder / "embeddings.npy", np.ones((3, 4), np.float32))
    assert f"{folder / 'embeddings.npy'}: shape [3, 4], expected [2, D]" in _refused(f"external:x={folder}", spec)
    np.save(folder / "embeddings.npy", np.ones((2, 4), np.float16))  # any numeric dtype is read as float32
    assert ExternalBackend.from_spec(f"external:x={folder}", spec).embed_probes(None, ["b@enrol"]).dtype == np.float32
    np.save(folder / "enrol.emb.npy", np.ones((2, 4)))
    assert "keep one layout" in _refused(f"external:x={folder}", spec)
    (folder / "embeddings.npy").unlink()
    np.save(folder / "probe_9m.emb.npy", np.ones((2, 4)))
    assert "lists no tensor probe_9m.npy" in _refused(f"external:x={folder}", spec)
    (folder / "probe_9m.emb.npy").unlink()
    np.save(folder / "enrol.emb.npy", np.ones((2, 5)))
    assert f"{folder / 'enrol.emb.npy'}: embeddings have 5 values per row" in _refused(f"external:x={folder}", spec)
