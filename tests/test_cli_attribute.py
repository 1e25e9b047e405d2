"""`workbench attribute` in every format, against model.attribute on the same input (in process:
the CLI's own code path, without a subprocess's start-up per format)."""
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

import workbench as wb
from workbench.cli.attribute import TOP_SOURCES as TOP
from workbench.cli.main import main
from workbench.errors import IncompleteAttributionWarning

PROMPT, CONTINUATION = "The capital of France is", " Paris."
ARGS = ["attribute", PROMPT, "--continuation", CONTINUATION, "--model", "tiny:gpt2"]


def test_formats_hold_what_the_api_computes(tmp_path, capsys):
    expected = wb.load("tiny:gpt2").attribute(PROMPT, continuation=CONTINUATION, method="input_x_gradient",
                                              foil=" b", progress=False)
    method_args = ARGS + ["--method", "input_x_gradient", "--foil", " b"]
    assert main(method_args + ["--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    values = np.array(data["arrays"]["attr_input_x_gradient"], dtype=float)  # NaN came as null
    np.testing.assert_allclose(values, expected.arrays["attr_input_x_gradient"], rtol=1e-5, atol=1e-7)
    assert data["meta"]["attribution"]["contrastive"] and data["tokens"][-1]["foil"] == " b"

    assert main(method_args + ["--format", "run", "--out", str(tmp_path / "run")]) == 0
    saved = wb.Run.load(tmp_path / "run")
    np.testing.assert_allclose(saved.arrays["attr_input_x_gradient"], expected.arrays["attr_input_x_gradient"],
                               rtol=1e-5, atol=1e-7)
    assert main(method_args + ["--format", "parquet", "--out", str(tmp_path / "a.parquet")]) == 0
    rows = pd.read_parquet(tmp_path / "a.parquet")
    assert rows["target"].tolist() == expected.table["target"].tolist()
    assert load_file(str(tmp_path / "a.arrays.safetensors"))["attr_targets"].tolist() == \
        expected.arrays["attr_targets"].tolist()

    assert main(ARGS + ["--method", "occlusion", "--level", "word"]) == 0
    table = capsys.readouterr().out
    occluded = wb.load("tiny:gpt2").attribute(PROMPT, continuation=CONTINUATION, method="occlusion", level="word",
                                             progress=False)
    lines = table.splitlines()
    assert "occlusion of" in lines[0] and lines[1] == PROMPT + CONTINUATION
    last = occluded.arrays["attr_targets"][-1]
    row = occluded.arrays["attr_occlusion"][-1]
    strongest = int(np.nanargmax(np.abs(row)))
    # the last target's line names its strongest source first
    assert lines[-1].split()[0] == str(last)
    first_source = lines[-1].split("  ")[-TOP:][0].strip()
    assert first_source.startswith(f"{strongest}:{occluded.table['token'][strongest]!r} ")


@pytest.mark.parametrize("args, message", [
    (["--targets", "1,x"], "--targets takes comma-separated token positions"),
    (["--targets", "0"], "targets must be token positions in [1,"),
    (["--foil", " Paris is"], "a foil must be exactly one token"),
    (["--method", "integrated_gradients", "--steps", "0"], "--steps must be a positive integer"),
])
def test_errors_are_one_line(args, message, capsys):
    assert main(ARGS + args) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and message in error


def test_continuation_and_max_new_tokens_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(ARGS + ["--max-new-tokens", "3"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_an_unresolved_integrated_gradient_is_said_in_one_line(capsys):
    assert main(ARGS + ["--method", "integrated_gradients", "--steps", "1"]) == 0
    captured = capsys.readouterr()
    with pytest.warns(IncompleteAttributionWarning):
        run = wb.load("tiny:gpt2").attribute(PROMPT, continuation=CONTINUATION, method="integrated_gradients",
                                             steps=1, progress=False)
    note = run.meta["attribution"]["incomplete"]
    assert f"workbench: warning: {note}\n" in captured.err and "Warning:" not in captured.err  # no Python warning
    lines = captured.out.splitlines()
    assert lines[-1] == f"! {note}"
    targets = run.arrays["attr_targets"]
    gap, delta = (run.table[c].to_numpy(dtype=float)[targets] for c in ("ig_gap", "ig_delta"))
    rows = lines[lines.index(next(line for line in lines if line.lstrip().startswith("pos"))) + 1:-1]
    marked = [row.split()[0] for row in rows if row[:43].endswith("!")]  # after the gap column
    assert marked == [str(t) for t, g, d in zip(targets, gap, delta) if abs(g) > max(0.1 * abs(d), 0.01)]


def test_baseline_and_rule_reach_integrated_gradients(capsys):
    options = dict(method="integrated_gradients", steps=4, baseline=2, rule="midpoint", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteAttributionWarning)
        expected = wb.load("tiny:gpt2").attribute(PROMPT, continuation=CONTINUATION, **options)
    assert main(ARGS + ["--method", "integrated_gradients", "--steps", "4", "--baseline", "2", "--rule", "midpoint",
                        "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["meta"]["attribution"]["baseline"] == 2 and data["meta"]["attribution"]["rule"] == "midpoint"
    np.testing.assert_allclose(np.array(data["arrays"]["attr_integrated_gradients"], dtype=float),
                               expected.arrays["attr_integrated_gradients"], rtol=1e-5, atol=1e-7)
    assert main(ARGS + ["--method", "integrated_gradients", "--baseline", "ones"]) == 2
    assert "baseline must be 'zeros' or a token id" in capsys.readouterr().err
