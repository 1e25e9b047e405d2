"""`workbench compare` against the API run in this process: the same numbers in every output
format. One real subprocess (JSON) as a user runs it; the other formats through `main()` in
this process (the same code after argument parsing, without a second start-up)."""
import json

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from test_cli import workbench
from workbench.cli.main import main

TEXT = "The capital of France is Paris."


@pytest.mark.parametrize("args, message", [
    (["compare", TEXT, "--model", "tiny:llama"], "nothing to compare: give --reference MODEL"),
    (["compare", TEXT, "--model", "tiny:llama", "--context", "a", "--reference-context", "a"], "nothing to compare"),
    (["compare", TEXT, "--reference", "tiny:qwen2", "--format", "run"], "add --out PATH"),
    (["compare", TEXT, "--reference", "tiny:qwen2", "--gamma", "0"], "--gamma must be a positive integer"),
])
def test_errors_are_one_clean_line(args, message):
    result = workbench(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("workbench: error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_two_models_in_every_format(tmp_path, capsys):
    model, reference = wb.load("tiny:llama"), wb.load("tiny:qwen2")
    want = model.compare(TEXT, reference=reference, branches=2, branch_tokens=3, progress=False)
    args = ["compare", TEXT, "--model", "tiny:llama", "--reference", "tiny:qwen2", "--branches", "2",
            "--branch-tokens", "3"]

    data = json.loads(workbench(*args, "--format", "json").stdout)
    assert data["meta"]["compare"]["reference"] == "tiny:qwen2"
    for name in ("kl_pq", "js", "acceptance", "log_ratio", "ref_surprisal"):
        got = np.array([row[name] if row[name] is not None else np.nan for row in data["tokens"]], dtype=float)
        np.testing.assert_allclose(got, want.table[name].astype(float).to_numpy(), rtol=1e-6, err_msg=name)
    assert [row["branch"] for row in data["tokens"]] == [None if pd.isna(b) else b for b in want.table["branch"]]

    assert main(args + ["--signal", "acceptance"]) == 0
    table = capsys.readouterr().out
    assert "p = tiny:llama, q = tiny:qwen2" in table and "color = acceptance" in table
    assert f"mean acceptance {want.table['acceptance'].astype(float).mean():.3f}" in table
    assert "branches where the greedy choices differ" in table

    assert main(args + ["--format", "run", "--out", str(tmp_path / "pair")]) == 0
    saved = wb.Run.load(tmp_path / "pair")
    assert saved.table[["token", "kl_pq", "ref_topk_ids"]].equals(want.table[["token", "kl_pq", "ref_topk_ids"]])


def test_two_contexts_as_parquet_and_a_foreign_vocabulary(tmp_path, capsys):
    out = tmp_path / "pair.parquet"
    assert main(["compare", TEXT, "--model", "tiny:llama", "--context", "Paris is in France. ", "--branches", "0",
                 "--format", "parquet", "--out", str(out)]) == 0
    want = wb.load("tiny:llama").compare(TEXT, context="Paris is in France. ", branches=0, progress=False)
    rows = pd.read_parquet(out)
    np.testing.assert_allclose(rows["js"].astype(float), want.table["js"].astype(float), rtol=1e-6)
    assert main(["compare", TEXT, "--model", "tiny:llama", "--reference", "workbench:tiny-moe"]) == 2
    assert "same tokenizer vocabulary" in capsys.readouterr().err


def test_the_signal_flag_offers_every_pair_signal():
    from workbench.cli.main import PAIR_SIGNAL_NAMES
    from workbench.compare.signals import PAIR_SIGNALS

    assert set(PAIR_SIGNAL_NAMES) == set(PAIR_SIGNALS)
