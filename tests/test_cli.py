"""The CLI as a user runs it: a real subprocess, its stdout/stderr and exit status."""
import json
import subprocess
import sys

import pandas as pd
import pytest


def workbench(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=300, **kwargs)


def test_version():
    result = workbench("--version")
    assert result.returncode == 0 and result.stdout.startswith("token-workbench ")


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "", "--model", "tiny:llama"], "the text is empty"),
        (["analyze", "x", "--model", "workbench:nope"], "unknown embedded model 'workbench:nope'; embedded models: workbench:smollm2-135m"),
        (["analyze", "x", "--model", "tiny:llama", "--signals", "nope"], "unknown signal 'nope'"),
        (["analyze", "--file", "/nonexistent.txt", "--model", "tiny:llama"], "file not found"),
        (["analyze", "x", "--model", "tiny:llama", "--format", "parquet"], "add --out PATH"),
        (["analyze", "word " * 600, "--model", "tiny:llama"], "tokens but tiny:llama takes at most 512"),
    ],
)
def test_errors_are_one_clean_line(args, message):
    result = workbench(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("workbench: error:")]
    assert len(lines) == 1 and message in lines[0]


def test_json_table_and_parquet(tmp_path):
    text = "Hello world.\nSecond line 🙂"
    data = json.loads(workbench("analyze", text, "--model", "tiny:gpt2", "--format", "json").stdout)
    assert data["model"] == "tiny:gpt2"
    tokens = data["tokens"]
    assert {"position", "token_id", "token", "start", "end", "entropy", "surprisal", "rank"} <= tokens[1].keys()
    assert tokens[0]["entropy"] is None and tokens[1]["entropy"] > 0
    assert "".join(text[t["start"]:t["end"]] for t in tokens) == text

    table = workbench("analyze", text, "--model", "tiny:gpt2")
    assert table.returncode == 0 and "surprisal" in table.stdout and "\x1b[" not in table.stdout  # no color when piped

    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "t.parquet"
    result = workbench("analyze", "--file", str(tmp_path / "in.txt"), "--model", "tiny:gpt2", "--format", "parquet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert pd.read_parquet(out)["token_id"].tolist() == [t["token_id"] for t in tokens]


def test_truncate_flag():
    result = workbench("analyze", "word " * 600, "--model", "tiny:llama", "--truncate", "--format", "json")
    data = json.loads(result.stdout)
    assert len(data["tokens"]) == 512 and data["meta"]["truncated_from"] > 512
