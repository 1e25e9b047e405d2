"""Run.save / Run.load round-trip exactly (table dtypes and <NA>s, list columns, arrays,
metadata, text with unusual characters), and a failed save loses nothing."""
import json

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.model.tiny import tiny_model

TEXT = "Line one\r\nline two 🙂 with\ttabs and 日本語"


@pytest.fixture(scope="module")
def run():
    return tiny_model("llama").analyze(TEXT, signals=["uncertainty", "logit_lens"])


def test_round_trip_is_exact(run, tmp_path):
    run.save(tmp_path / "r")
    back = wb.Run.load(tmp_path / "r")
    pd.testing.assert_frame_equal(back.table, run.table, check_exact=True)
    assert back.table["rank"].dtype == pd.Int64Dtype() and back.table["entropy"].dtype == pd.Float64Dtype()
    assert back.table.loc[0, "topk_ids"] is None and isinstance(back.table.loc[1, "topk_ids"], list)
    assert back.arrays.keys() == run.arrays.keys()
    for name in run.arrays:
        np.testing.assert_array_equal(back.arrays[name], run.arrays[name])
        assert back.arrays[name].dtype == run.arrays[name].dtype
    assert back.meta == run.meta
    assert back.text == TEXT


def test_save_replaces_a_run_but_not_other_folders(run, tmp_path):
    run.save(tmp_path / "r")
    run.save(tmp_path / "r")  # replacing a run is fine
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(WorkbenchError, match="not a saved run"):
        run.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_failed_save_keeps_previous_run(run, tmp_path, monkeypatch):
    run.save(tmp_path / "r")
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(WorkbenchError, match="cannot save to .*: disk full"):
        run.save(tmp_path / "r")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert wb.Run.load(tmp_path / "r").text == TEXT


def test_json_has_nulls_not_nans(run):
    data = json.loads(run.to_json())
    first, second = data["tokens"][0], data["tokens"][1]
    assert first["entropy"] is None and first["rank"] is None and first["topk_ids"] is None
    assert isinstance(second["entropy"], float) and isinstance(second["rank"], int)
    assert data["model"] == "tiny:llama"


def test_load_rejects_other_folders(tmp_path):
    with pytest.raises(WorkbenchError, match="not a saved run"):
        wb.Run.load(tmp_path)


def test_load_refuses_a_saved_group(tmp_path):
    table = pd.DataFrame({"response": [0, 1], "position": [0, 0], "token_id": [5, 6]})
    wb.Group("prompt", ["a", "b"], [1.0, 0.0], table, {"prompt_ids": np.array([1, 2])}).save(tmp_path / "g")
    with pytest.raises(WorkbenchError, match=r"is a saved group, not a run; load it with wb\.Group\.load"):
        wb.Run.load(tmp_path / "g")
    assert wb.Group.load(tmp_path / "g").responses == ["a", "b"]


def test_convenience_views(run, tmp_path):
    run.save(tmp_path / "r")
    back = wb.Run.load(tmp_path / "r")
    assert back.equals(run)
    back.table.loc[1, "entropy"] = 0.0
    assert not back.equals(run)
    nxt = run.next_token
    assert list(nxt.columns) == ["token_id", "token", "prob"] and nxt.prob.is_monotonic_decreasing
    lens = run.logit_lens("entropy")
    assert lens.shape == (run.arrays["lens_entropy"].shape) and lens.index[0] == "embeddings"
    np.testing.assert_array_equal(lens.to_numpy(), run.arrays["lens_entropy"])
    with pytest.raises(WorkbenchError, match="available: entropy"):
        run.logit_lens("nope")


def test_save_refuses_to_replace_a_saved_group(run, tmp_path):
    table = pd.DataFrame({"response": [0, 1], "position": [0, 0], "token_id": [5, 6]})
    group = wb.Group("prompt", ["a", "b"], [1.0, 0.0], table, {"prompt_ids": np.array([1, 2])})
    group.save(tmp_path / "g")
    with pytest.raises(WorkbenchError, match="holds a saved group, not a run"):
        run.save(tmp_path / "g")
    assert wb.Group.load(tmp_path / "g").equals(group)  # untouched
