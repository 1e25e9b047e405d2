import os

import pytest
import torch

import workbench as wb
from pages import chromium, start_server, stop_server

if not torch.cuda.is_available():
    # Triton kernels run on CPU tensors only in the interpreter, which reads this variable
    # when triton is first imported (never before this point: workbench imports it lazily).
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def smol():
    """The embedded SmolLM2-135M-Instruct (first load writes the local cache)."""
    return wb.load()


@pytest.fixture(scope="module")
def browser():
    """Chromium driven by Playwright, one per test module (skipped where either is missing)."""
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a `serve` process on tiny:llama; the process is stopped afterwards, and
    its log must show no traceback."""
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    process, url = start_server(log_path)
    try:
        assert f"at {url}" in log_path.read_text()  # the URL is printed
        yield url
    finally:
        stop_server(process)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread than on two on a shared machine (several times: no
    threads waiting for each other on a busy CPU); the setting is put back afterwards. A module
    asks for it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
