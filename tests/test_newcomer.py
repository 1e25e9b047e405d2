"""What a new user met on the CLI and the API (issue 16): bad input gets one clear line
before anything is computed, nothing computed is dropped silently, a non-finite result is
reported instead of printed, saved runs are readable by others and their damage is named.
CLI checks run a real subprocess: exit status and the one `workbench: error:` line."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.numpy import load_file

import workbench as wb
from workbench.model.embedded import EMBEDDED
from workbench import errors
from workbench.errors import WorkbenchError
from workbench.model.tiny import tiny_model


def workbench(*args, **kwargs):
    kwargs.setdefault("text", True)
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, timeout=300, **kwargs)


def error_line(result) -> str:
    """The one error line of a failed command (exit status 2, nothing else on stderr)."""
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench: error: "), stderr
    return lines[0]


# 1. Invalid UTF-8 and lone surrogates --------------------------------------------------------
@pytest.mark.parametrize("command", [["analyze"], ["generate"], ["rollouts", "--answer", "4"]])
def test_invalid_utf8_on_the_command_line_says_where(command):
    result = workbench(command[0], b"Hello \xed\xa0\x80 x \xff", *command[1:], "--model", "tiny:llama", text=False)
    line = error_line(result)
    assert "not valid Unicode at character 6" in line and "--replace-invalid" in line


def test_invalid_text_in_the_api_says_where():
    model = tiny_model("llama")
    with pytest.raises(WorkbenchError, match="not valid Unicode at character 6"):
        model.analyze("Hello \ud800 world")
    with pytest.raises(WorkbenchError, match="message 0 content is not valid Unicode at character 2"):
        model.analyze(messages=[{"role": "user", "content": "Hi\udcff"}])


def test_replace_invalid_gives_replacement_characters():
    result = workbench("analyze", b"Hello \xff x", "--model", "tiny:llama", "--format", "json", "--replace-invalid",
                       text=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"] == "Hello \ufffd x"


# 2. serve's port and host ----------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--port", "99999"], "--port must be in [0, 65535]"),
    (["--port", "-1"], "--port must be in [0, 65535]"),
    (["--host", "999.1.1.1"], "--host 999.1.1.1 is not an address or a known host name"),
])
def test_serve_refuses_impossible_ports_and_hosts(args, message):
    line = error_line(workbench("serve", "--model", "tiny:llama", *args))
    assert message in line and "another program" not in line


# 3. Arrays are not dropped by --format parquet --------------------------------------------------
def test_parquet_keeps_the_arrays_and_meta_beside_the_rows(tmp_path):
    text = "The cat sat on the mat."
    expected = tiny_model("llama").analyze(text, signals=["uncertainty", "logit_lens"])
    out = tmp_path / "lens.parquet"
    result = workbench("analyze", text, "--model", "tiny:llama", "--signals", "uncertainty,logit_lens",
                       "--format", "parquet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    sidecar = tmp_path / "lens.arrays.safetensors"
    assert str(sidecar) in result.stderr
    arrays = load_file(str(sidecar))
    assert sorted(arrays) == sorted(expected.arrays)
    np.testing.assert_array_equal(arrays["lens_rank"], expected.arrays["lens_rank"])
    assert pd.read_parquet(out)["token_id"].tolist() == expected.table["token_id"].tolist()
    meta = json.loads(pq.read_schema(out).metadata[b"workbench"])
    assert meta["next_token"]["topk_ids"] == expected.meta["next_token"]["topk_ids"]


# 4. Non-finite results and damaged GGUF files ----------------------------------------------------
def damaged(model):
    """`model` with one NaN in layer 1's MLP: every hidden state from layer 1 on is NaN."""
    with torch.no_grad():
        model.adapter.layers(model.hf)[1].mlp.down_proj.weight[0, 0] = float("nan")
    return model


DAMAGED_WEIGHT = "model.layers.1.mlp.down_proj.weight"


def test_a_damaged_model_warns_and_flags_every_kind_of_run():
    model = damaged(tiny_model("llama"))
    runs = []
    for make in (lambda: model.analyze("The cat sat on the mat."),
                 lambda: model.generate("The cat", max_new_tokens=3, seed=0, progress=False),
                 lambda: model.rollouts("2+2?", n=2, reward="4", max_new_tokens=3, seed=0, thr=None, progress=False)):
        with pytest.warns(errors.NonFiniteWarning, match=DAMAGED_WEIGHT):
            runs.append(make())
    assert all(DAMAGED_WEIGHT in run.meta["non_finite"] for run in runs)
    assert "non_finite" not in tiny_model("llama").analyze("The cat sat on the mat.").meta  # a healthy model


def test_an_overflow_names_the_first_layer_it_reaches():
    """Finite weights, but layer 2's output overflows (as float16 activations can): the
    sentence names that layer."""
    model = tiny_model("llama")

    def overflow(module, args, output):
        return output * float("inf") if isinstance(output, torch.Tensor) else (output[0] * float("inf"), *output[1:])

    model.adapter.layers(model.hf)[1].register_forward_hook(overflow)
    with pytest.warns(errors.NonFiniteWarning, match="weights are finite, but the hidden states overflow from layer 2"):
        run = model.analyze("The cat sat on the mat.")
    assert "layer 2 of 2" in run.meta["non_finite"]


def test_a_logit_of_minus_infinity_is_a_probability_of_zero(monkeypatch):
    """Some models give tokens they never emit a logit of -inf: that is no damage."""
    import warnings

    model = tiny_model("llama")
    logits = model.adapter.logits
    monkeypatch.setattr(model.adapter, "logits", lambda hf, hidden: logits(hf, hidden).index_fill(-1, torch.tensor([5]),
                                                                                                   float("-inf")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.NonFiniteWarning)
        run = model.generate("The cat", max_new_tokens=3, seed=0, progress=False)
    assert "non_finite" not in run.meta and 5 not in run.table["token_id"].tolist()[-3:]


def test_the_cli_refuses_to_print_a_non_finite_run(tmp_path):
    model = damaged(tiny_model("llama"))
    model.hf.save_pretrained(tmp_path / "model")
    model.tokenizer.save_pretrained(tmp_path / "model")
    line = error_line(workbench("analyze", "The cat sat on the mat.", "--model", str(tmp_path / "model")))
    assert "NaN or infinite" in line and DAMAGED_WEIGHT in line


@pytest.mark.parametrize("keep", [5000, 0.6])
def test_a_truncated_gguf_says_so(tmp_path, keep):
    data = EMBEDDED["workbench:smollm2-135m"].locate().read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    line = error_line(workbench("analyze", "Hello", "--model", str(cut)))
    assert f"the GGUF file {cut} is truncated or damaged" in line


# 5. Damaged saved folders and unwritable destinations --------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    run = tiny_model("llama").analyze("A short text.", signals=["uncertainty", "logit_lens"])
    group = tiny_model("llama").rollouts("2+2?", n=2, reward="4", max_new_tokens=3, seed=0, thr=None, progress=False)
    return run.save(folder / "run"), group.save(folder / "group")


@pytest.mark.parametrize("file", ["table.parquet", "arrays.safetensors", "meta.json", "text.txt"])
@pytest.mark.parametrize("kind", ["run", "group"])
@pytest.mark.parametrize("damage", ["junk", "missing"])
def test_a_damaged_saved_folder_names_the_file(saved, tmp_path, file, kind, damage):
    import shutil

    folder = shutil.copytree(saved[kind == "group"], tmp_path / kind)
    if damage == "junk":
        (folder / file).write_bytes(b"\xff\x00 not what it should be")
    else:
        (folder / file).unlink()
    with pytest.raises(WorkbenchError, match=file.replace(".", r"\.")):
        (wb.Group if kind == "group" else wb.Run).load(folder)


def test_saving_where_nothing_can_be_written(saved):
    run = wb.Run.load(saved[0])
    with pytest.raises(WorkbenchError, match="cannot save to /proc/x/run"):
        run.save("/proc/x/run")


# 6. Saved folders follow the umask -----------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_runs_follow_the_umask(tmp_path, umask):
    run = tiny_model("llama").analyze("A short text.")
    previous = os.umask(umask)
    try:
        folder = run.save(tmp_path / "run")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    assert {stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir()} == {0o666 & ~umask}


# 7. A relative path to a file ------------------------------------------------------------------
def test_a_relative_path_to_a_file_is_a_file_not_a_hub_id(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"weights")
    line = error_line(workbench("analyze", "x", "--model", "model.bin", cwd=tmp_path))
    assert "model.bin is a file, not a model folder" in line


# 8. --compare and the default sampler -------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--compare", "top-p:0.9,top-p:0.9"], "--compare names top-p:0.9 more than once"),
    (["--compare", "top-p:0.9", "--sampler", "top-h", "--alpha", "0.3"], "--sampler does not apply beside --compare"),
    (["--compare", "top-p:0.9", "--alpha", "0.3"], "--alpha does not apply beside --compare"),
    (["--compare", ""], "--compare '' has an empty item"),
])
def test_compare_refuses_what_it_would_drop(args, message):
    assert message in error_line(workbench("generate", "Hello", "--model", "tiny:llama", *args))


def test_one_default_sampler_for_the_cli_and_the_api():
    api = tiny_model("llama").generate("Hello", max_new_tokens=2, seed=0, progress=False)
    cli = workbench("generate", "Hello", "--model", "tiny:llama", "--max-new-tokens", "2", "--seed", "0",
                    "--format", "json")
    assert cli.returncode == 0, cli.stderr
    cli_run = json.loads(cli.stdout)
    assert api.meta["sampler"] == cli_run["meta"]["sampler"] == "top-p 0.9, temperature 1"  # the README's default
    assert [t["token_id"] for t in cli_run["tokens"]] == api.table["token_id"].tolist()


# 9. Errors before the work, and nothing left behind -----------------------------------------------
def test_over_length_text_is_one_line_without_the_tokenizers_warning():
    result = workbench("analyze", "word " * 600, "--model", "workbench:tiny-moe")
    assert "takes at most 512" in error_line(result)


def test_empty_text_is_refused_before_the_model_loads(tmp_path):
    """The model does not exist: only a check made before loading it can answer first."""
    line = error_line(workbench("analyze", " ", "--model", str(tmp_path / "no-model")))
    assert "the text is empty" in line


@pytest.mark.parametrize("existing", ["file", "saved run"])
def test_compare_refuses_a_file_or_a_saved_run_as_its_folder_before_the_model_loads(tmp_path, existing):
    """--compare writes a folder per sampler inside --out: a file there, or a saved run (whose
    folder would gain sampler folders), is refused before the model loads (it does not exist)."""
    out = tmp_path / "out"
    if existing == "file":
        out.write_text("keep me")
    else:
        wb.Run("x", pd.DataFrame({"position": [0]}), {}, {}).save(out)
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_text()
    line = error_line(workbench("generate", "Hello", "--model", str(tmp_path / "no-model"), "--compare",
                                "top-p:0.9,min-p:0.1", "--format", "run", "--out", str(out)))
    assert f"is a {existing}" in line
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_text()) == before


def test_a_run_folder_that_is_not_a_run_is_refused_before_the_model_loads(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    line = error_line(workbench("analyze", "x", "--model", str(tmp_path / "no-model"), "--format", "run",
                                "--out", str(tmp_path / "notes")))
    assert "is not a saved run" in line
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_a_failed_run_leaves_no_empty_output_folder(tmp_path):
    result = workbench("analyze", "x", "--model", str(tmp_path / "no-model"), "--format", "json",
                       "--out", str(tmp_path / "new" / "deeper" / "x.json"))
    assert "does not exist" in error_line(result)
    assert not (tmp_path / "new").exists()


# 10. Input from stdin and files, chat, the number of alternatives --------------------------------
def test_text_from_standard_input_and_files(tmp_path):
    result = workbench("analyze", "--file", "-", "--model", "tiny:llama", "--format", "json", input="From stdin.")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"] == "From stdin."
    (tmp_path / "prompt.txt").write_text("Once upon", encoding="utf-8")
    result = workbench("generate", "--file", str(tmp_path / "prompt.txt"), "--model", "tiny:llama",
                       "--max-new-tokens", "2", "--alternatives", "3", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["text"].startswith("Once upon")
    assert {len(t["topk_ids"]) for t in data["tokens"] if t["topk_ids"] is not None} == {3}


def test_chat_input_from_the_command_line():
    messages = [{"role": "user", "content": "What is 2+2?"}]
    expected = tiny_model("llama").analyze(messages=messages)
    result = workbench("analyze", "What is 2+2?", "--chat", "--model", "tiny:llama", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["text"] == expected.text and [t["role"] for t in data["tokens"]] == expected.table["role"].tolist()


# 11. Sequence-level figures ---------------------------------------------------------------------
def test_sequence_figures_match_a_plain_forward():
    model = tiny_model("llama")
    run = model.analyze("The cat sat on the mat.")
    ids = torch.tensor([run.table["token_id"].tolist()])
    with torch.no_grad():
        logprobs = torch.log_softmax(model.hf(ids).logits[0, :-1].double(), -1)
    token_logprobs = logprobs.gather(1, ids[0, 1:, None])[:, 0]
    figures = run.meta["sequence"]
    assert figures["n_scored"] == len(run) - 1 and "first" in figures["scored"]
    assert figures["total_logprob"] == pytest.approx(float(token_logprobs.sum()), rel=1e-5)
    assert figures["mean_surprisal"] == pytest.approx(float(-token_logprobs.mean()), rel=1e-5)
    assert figures["perplexity"] == pytest.approx(float(torch.exp(-token_logprobs.mean())), rel=1e-5)


def test_the_cli_summary_shows_the_sequence_figures():
    result = workbench("analyze", "The cat sat on the mat.", "--model", "tiny:llama", "--format", "json")
    figures = json.loads(result.stdout)["meta"]["sequence"]
    table = workbench("analyze", "The cat sat on the mat.", "--model", "tiny:llama")
    assert f"perplexity {figures['perplexity']:.2f}" in table.stdout
    assert f"log-probability {figures['total_logprob']:.2f}" in table.stdout


# 12. Progress -----------------------------------------------------------------------------------
def test_the_logit_lens_bar_only_on_a_terminal():
    result = workbench("analyze", "word " * 300, "--model", "tiny:llama", "--signals", "logit_lens",
                       "--format", "json", "--truncate")
    assert result.returncode == 0 and "logit lens" not in result.stderr, result.stderr


def test_analyze_takes_progress(capsys):
    tiny_model("llama").analyze("word " * 300, signals="logit_lens", truncate=True, progress=False)
    assert "logit lens" not in capsys.readouterr().err


# 13. A byte-order mark ---------------------------------------------------------------------------
def test_a_byte_order_mark_is_not_text(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffHello world".encode("utf-8"))
    result = workbench("analyze", "--file", str(tmp_path / "bom.txt"), "--model", "tiny:llama", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"] == "Hello world"


# 14. Docs ----------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def test_the_signal_reference_ships_with_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/signals.md)" in readme and "../shared" not in readme
    reference = (ROOT / "docs" / "signals.md").read_text()
    for vector in (".643914", ".888734", ".181427"):  # softmax(2, 1, 0, -1) and its divergences
        assert vector in reference
    citing = [str(path.relative_to(ROOT)) for path in (ROOT / "workbench").rglob("*.py")
              if "DESIGN.md" in path.read_text()]
    assert citing == []


def test_the_readme_says_what_experts_holds_and_help_states_defaults():
    readme = (ROOT / "README.md").read_text()
    assert '`run.table["experts"]`: the top-1 expert per MoE layer' in readme
    def help_text(command):  # argparse wraps lines: compare words
        return " ".join(workbench(command, "--help").stdout.split())

    assert "none (default: auto)" in help_text("rollouts")
    assert "(default: 20" in help_text("bench")


def test_a_nan_in_the_first_slot_of_an_array_without_positions_last_is_seen():
    """Only an all-NaN first position (the logit lens of token 0) is the fill of "no prediction";
    a NaN at head 0 of [layer, head] or at expert 0 of one token's [layer, position, expert] is not."""
    from workbench.finite import arrays_finite

    lens = np.ones((3, 5))
    lens[:, 0] = np.nan
    heads = np.ones((4, 4))
    heads[1, 0] = np.nan
    experts = np.ones((4, 9, 8))
    experts[2, 3, 0] = np.nan
    assert arrays_finite({"lens_entropy": lens})
    assert not arrays_finite({"attn_head_entropy": heads})
    assert not arrays_finite({"routing_logits": experts})
    lens[1, 2] = np.inf
    assert not arrays_finite({"lens_entropy": lens})


def test_a_perplexity_past_float64_is_none_not_a_traceback():
    from workbench.pipelines.analyze import sequence_figures

    figures = sequence_figures(pd.Series([800.0, 700.0]), "every token")
    assert figures["mean_surprisal"] == 750.0 and figures["total_logprob"] == -1500.0
    assert figures["perplexity"] is None
    assert sequence_figures(pd.Series([700.0]), "every token")["perplexity"] == pytest.approx(np.exp(700.0))


def test_non_finite_values_with_finite_weights_and_hidden_states_are_not_called_an_overflow():
    """A run flagged while every weight and every layer's output is finite (a token of logit -inf
    that actually follows, surprisal +inf) names that cause, not an overflow after the last layer."""
    from workbench.finite import flag

    model = tiny_model("llama")
    meta = {}
    with pytest.warns(errors.NonFiniteWarning, match="a token of the text has probability 0"):
        flag(meta, model, "the analysis", [1, 2, 3])
    assert "hidden states overflow" not in meta["non_finite"]
