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
    next_line = table.stdout.splitlines()[-1]  # the prediction after the text, as in the JSON
    assert next_line.split()[0] == "next" and repr(data["meta"]["next_token"]["topk_tokens"][0]) in next_line

    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "t.parquet"
    result = workbench("analyze", "--file", str(tmp_path / "in.txt"), "--model", "tiny:gpt2", "--format", "parquet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert pd.read_parquet(out)["token_id"].tolist() == [t["token_id"] for t in tokens]


def test_truncate_flag():
    result = workbench("analyze", "word " * 600, "--model", "tiny:llama", "--truncate", "--format", "json")
    data = json.loads(result.stdout)
    assert len(data["tokens"]) == 512 and data["meta"]["truncated_from"] > 512


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "--file", "/tmp", "--model", "tiny:llama"], "/tmp is a folder; give a text file"),
        (["analyze", "x", "--model", "tiny:llama", "--format", "run"], "--format run writes a folder: add --out PATH"),
        (["generate", " ", "--model", "tiny:llama"], "the prompt is empty"),
        (["generate", "x", "--model", "tiny:llama", "--max-new-tokens", "0"], "--max-new-tokens must be a positive"),
        (["generate", "x", "--model", "tiny:llama", "--sampler", "top-h", "--alpha", "0"], "--alpha must be in (0, 1]"),
        (["generate", "x", "--model", "tiny:llama", "--sampler", "top-k", "--top-k", "0"], "--top-k must be at least 1"),
        (["generate", "x", "--model", "tiny:llama", "--sampler", "greedy", "--temperature", "0.7"],
         "greedy takes no parameters, got --temperature"),
    ],
)
def test_more_errors_are_one_clean_line(args, message):
    test_errors_are_one_clean_line(args, message)


def test_output_folders_are_created_and_arrays_are_exported(tmp_path):
    """--out in a folder that does not exist yet; the logit lens (arrays only) reaches the
    JSON, the run folder and the table, and equals the Python API's arrays."""
    import workbench as wb

    text = "The cat sat on the mat."
    expected = wb.load("tiny:llama").analyze(text, signals="logit_lens")
    lens_rank = expected.arrays["lens_rank"]  # [L+1, T]
    out = tmp_path / "new" / "deeper" / "lens.json"
    result = workbench("analyze", text, "--model", "tiny:llama", "--signals", "logit_lens", "--format", "json",
                       "--out", str(out))
    assert result.returncode == 0, result.stderr
    arrays = json.loads(out.read_text())["arrays"]
    assert arrays["lens_rank"] == lens_rank.tolist()
    surprisal = expected.arrays["lens_surprisal"]
    assert arrays["lens_surprisal"][0][0] is None and surprisal[0, 0] != surprisal[0, 0]  # NaN becomes null
    assert arrays["lens_surprisal"][-1][1:] == pytest.approx(surprisal[-1, 1:].tolist(), rel=1e-6)

    folder = tmp_path / "runs" / "lens"
    result = workbench("analyze", text, "--model", "tiny:llama", "--signals", "logit_lens", "--format", "run",
                       "--out", str(folder))
    assert result.returncode == 0 and "wb.Run.load" in result.stderr
    assert (wb.Run.load(folder).arrays["lens_rank"] == lens_rank).all()

    table = workbench("analyze", text, "--model", "tiny:llama", "--signals", "logit_lens")
    assert table.returncode == 0 and "logit lens: rank of each token" in table.stdout
    lens_lines = table.stdout.split("logit lens:")[1].splitlines()[2:]
    last_layer = lens_rank.shape[0] - 1
    assert lens_lines[0].split()[-2] == str(lens_rank[last_layer, 1])  # token 1's rank at the last layer
    assert "--format json prints them" in table.stderr  # the other lens arrays are not in the table


def test_serve_refuses_a_port_in_use():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = workbench("serve", "--model", "tiny:llama", "--port", str(port))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
