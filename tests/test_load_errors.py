"""`wb.load` refuses a device it cannot use and a local path that is not there with a
WorkbenchError that says what to give instead, before any model loads."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import workbench as wb
from workbench.errors import WorkbenchError

VALID_DEVICES = r"use one of cpu, cuda, cuda:N \(N a GPU index\), mps, or auto"


@pytest.mark.parametrize("device", ["gpu", "CPU", "cuda:x", "meta", 3.5])
def test_unknown_devices_list_the_valid_ones(device):
    with pytest.raises(WorkbenchError, match=f"unknown device {device!r}; {VALID_DEVICES}"):
        wb.load("tiny:llama", device=device)


def test_auto_and_torch_devices():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert wb.load("tiny:llama", device="auto").device.type == expected
    assert wb.load("tiny:llama", device=torch.device("cpu")).device.type == "cpu"


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_without_mps():
    with pytest.raises(WorkbenchError, match="'mps' was asked for but Apple's MPS is not available"):
        wb.load("tiny:llama", device="mps")


def test_cli_device_gpu_is_one_clean_line():
    result = subprocess.run([sys.executable, "-m", "workbench", "analyze", "x", "--model", "tiny:llama", "--device", "gpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown device 'gpu'; use one of cpu, cuda, cuda:N" in result.stderr


@pytest.mark.parametrize("name", ["./missing_dir/", "../missing_dir", "~/missing_dir_zz", "/missing/model",
                                  "models/missing/model", "missing_dir/"])
def test_a_missing_local_folder_says_so(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkbenchError, match=f"folder {name} does not exist; give a folder with safetensors"):
        wb.load(name)


def test_a_path_object_and_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkbenchError, match="folder missing does not exist"):
        wb.load(Path("missing"))
    Path("weights.bin").write_bytes(b"")
    with pytest.raises(WorkbenchError, match=r"\./weights\.bin is a file, not a model folder"):
        wb.load("./weights.bin")


def test_an_unreachable_hub_is_said_at_once(monkeypatch):
    """A hub id that is not cached, with the hub unreachable (here: a closed local port), fails
    in seconds with what to do, instead of after transformers' five retries."""
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    started = time.perf_counter()
    with pytest.raises(WorkbenchError, match=r"'someone/not-cached' is not in the local Hugging Face cache and "
                                             r"127.0.0.1 cannot be reached .*embedded model"):
        wb.load("someone/not-cached")
    assert time.perf_counter() - started < 10


def test_a_missing_relative_folder_read_as_a_hub_id_is_named(monkeypatch, tmp_path):
    """'models/foo' beside a models/ folder is read as a hub id ('owner/name'); when that
    fails, the error also says the local folder does not exist. A hub-shaped name with no
    such folder gets no note."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkbenchError, match=rf"if you meant a local folder: {tmp_path}/models/foo does not exist"):
        wb.load("models/foo")
    with pytest.raises(WorkbenchError) as error:
        wb.load("someone/not-cached")
    assert "if you meant a local folder" not in str(error.value)
