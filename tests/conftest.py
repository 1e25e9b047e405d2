import pytest

import workbench as wb


@pytest.fixture(scope="session")
def smol():
    """The embedded SmolLM2-135M-Instruct (first load writes the local cache)."""
    return wb.load()
