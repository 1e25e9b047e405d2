import os

import pytest
import torch

import workbench as wb
from pages import chromium

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
