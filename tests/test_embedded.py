"""End-to-end checks on the embedded SmolLM2-135M-Instruct (offline)."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_paris_is_in_top_4(smol):
    run = smol.analyze("The capital of France is Paris")
    last = run.table.iloc[-1]
    assert last["token"] == " Paris" and last["rank"] < 4
    assert " Paris" in smol.analyze("The capital of France is").meta["next_token"]["topk_tokens"][:4]


def test_cli_acceptance():
    """`workbench analyze "The capital of France is Paris." --format json` on the default model."""
    result = subprocess.run([sys.executable, "-m", "workbench", "analyze", "The capital of France is Paris.", "--format", "json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "workbench:smollm2-135m"
    paris = next(t for t in data["tokens"] if t["token"] == " Paris")
    assert paris["rank"] == 0 and 0 < paris["surprisal"] < 1 and paris["entropy"] > 0


def test_chat_messages(smol):
    run = smol.analyze(messages=[{"role": "user", "content": "What is the capital of France?"},
                                 {"role": "assistant", "content": "The capital of France is Paris."}])
    response = run.table[run.table.role == "response"]
    assert "".join(response.token) == "The capital of France is Paris."
    paris = response[response.token == " Paris"].iloc[0]
    assert paris["rank"] == 0  # an instruct model is sure of it in a chat


def test_logit_lens_last_layer_is_the_output(smol):
    run = smol.analyze("The capital of France is Paris.", signals=["uncertainty", "logit_lens"])
    assert run.arrays["lens_rank"].shape == (smol.n_layers + 1, len(run))
    assert (run.arrays["lens_rank"][-1, 1:] == run.table["rank"][1:].to_numpy(int)).all()
