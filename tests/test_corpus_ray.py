"""The Ray Data engine writes the dataset the local engine writes (a local Ray of 2 CPUs)."""
import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.corpus.shards import DOCUMENTS, TOKENS, files, rows_of

TEXTS = ["The cat sat on the mat.", "Hi", "Paris is the capital of France.", "", "the the the the",
         "A longer document with several words in it, and a comma."]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")  # the dev extra installs it; `pip install token-workbench[ray]` for users
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _table(out, folder) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pd.concat([rows_of(pq.read_table(p)) for p in files(out, folder)], ignore_index=True)


def test_ray_engine_equals_local(local_ray, tmp_path):
    import torch

    torch.set_num_threads(1)
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(TEXTS * 2) + "\n")
    model, reference = wb.load("tiny:llama"), wb.load("tiny:qwen2")
    options = dict(signals=["uncertainty"], reference=reference, batch_size=3, shard_size=5, progress=False)
    local = wb.corpus(model, source, out=tmp_path / "local", **options)
    distributed = wb.corpus(model, source, out=tmp_path / "ray", engine="ray", actors=1, **options)
    assert distributed.manifest["counts"] == local.manifest["counts"]
    assert distributed.manifest["engine"] == "ray" and "ray" in distributed.manifest["versions"]
    for folder in (TOKENS, DOCUMENTS):
        mine, theirs = _table(distributed.path, folder), _table(local.path, folder)
        assert list(mine.columns) == list(theirs.columns) and len(mine) == len(theirs) > 0
        for column in mine.columns:
            if pd.api.types.is_float_dtype(mine[column]):  # batches may be cut differently: fp32 rounding
                np.testing.assert_allclose(mine[column].astype(float), theirs[column].astype(float), rtol=1e-5,
                                           atol=1e-4, err_msg=column)
            else:
                assert mine[column].tolist() == theirs[column].tolist(), column
