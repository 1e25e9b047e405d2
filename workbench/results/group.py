"""`Group`: G responses to one prompt, their rewards and GRPO advantages, and one table of
per-token rows across the responses.

group.prompt      the prompt as the model saw it (the rendered chat template for chat input)
group.responses   the G response texts (without the end-of-sequence token)
group.rewards     [G] float64; group.advantages [G] float64, A_i = (r_i - mean r) / (std r + eps)
group.table       one row per response token: response, position (within the response),
                  token_id, token, start, end (character span in that response's text),
                  reward, advantage, then signal columns (logprob, entropy, rank, the
                  sampler's kept / kept_entropy / sample_prob, d3s, thr, ...)
group.arrays      named numpy arrays (prompt_ids [P], ...)
group.meta        model, sampler, seed, reward, advantage rule, ...

`save(dir)` / `Group.load(dir)` use the same folder layout as `Run` (table.parquet,
arrays.safetensors, meta.json, text.txt with the prompt); rewards and advantages are stored
as arrays, responses in the metadata.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import WorkbenchError
from .run import Run, read_folder, saved_kind

ADVANTAGE_EPS = 1e-4
KIND = "group"


def grpo_advantages(rewards, eps: float = ADVANTAGE_EPS) -> np.ndarray:
    """GRPO (Shao et al. 2024): A_i = (r_i - mean r) / (std r + eps), std over the group
    (population, ddof = 0). Equal rewards give A = 0; the advantages sum to zero."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1 or len(rewards) == 0:
        raise WorkbenchError(f"rewards must be a non-empty 1-d sequence, got shape {rewards.shape}")
    centered = rewards - rewards.mean()
    return centered / (rewards.std() + eps)


class Group:
    def __init__(self, prompt: str, responses: list[str], rewards, table: pd.DataFrame,
                 arrays: dict[str, np.ndarray] | None = None, meta: dict | None = None,
                 advantages=None, reward=None):
        self.prompt = prompt
        self.responses = list(responses)
        self.rewards = np.asarray(rewards, dtype=np.float64)
        self.table = table
        self.arrays = dict(arrays or {})
        self.meta = dict(meta or {})
        self.reward = reward  # the reward function, when known (not saved: code is not data)
        self.advantages = (grpo_advantages(self.rewards, self.meta.get("advantage_eps", ADVANTAGE_EPS))
                           if advantages is None else np.asarray(advantages, dtype=np.float64))
        if not len(self.responses) == len(self.rewards) == len(self.advantages):
            raise WorkbenchError(f"{len(self.responses)} responses but {len(self.rewards)} rewards "
                                 f"and {len(self.advantages)} advantages")

    # ----- the responses as token ids ------------------------------------------------------
    @property
    def prompt_ids(self) -> list[int]:
        return self.arrays["prompt_ids"].tolist()

    def response_ids(self, response: int | None = None):
        """Token ids of one response (list), or of every response (list of lists), from the
        table in position order."""
        ordered = self.table.sort_values(["response", "position"], kind="stable")
        by_response = {int(r): rows["token_id"].tolist() for r, rows in ordered.groupby("response", sort=True)}
        if response is not None:
            self._check_response(response)
            return by_response.get(response, [])
        return [by_response.get(i, []) for i in range(len(self))]

    def grid(self, column: str, fill=np.nan, dtype=object) -> np.ndarray:
        """[G, T] values of `column` by (response, position), `fill` after each response's end
        (T: the longest response)."""
        table = self.table
        width = int(table["position"].max()) + 1 if len(table) else 0
        grid = np.full((len(self), width), fill, dtype=dtype)
        grid[table["response"].to_numpy(), table["position"].to_numpy()] = table[column].to_numpy()
        return grid

    def lengths(self) -> np.ndarray:
        """|y_i|: tokens per response [G]."""
        counts = self.table.groupby("response").size()
        return np.array([int(counts.get(i, 0)) for i in range(len(self))], dtype=np.int64)

    def correct(self, threshold: float = 0.0) -> np.ndarray:
        """Which responses count as correct (reward > threshold) [G] bool."""
        return self.rewards > threshold

    def rows(self, response: int) -> pd.DataFrame:
        """The table rows of one response, in position order."""
        self._check_response(response)
        return self.table[self.table["response"] == response].sort_values("position")

    def _check_response(self, response: int) -> None:
        if not 0 <= response < len(self):
            raise WorkbenchError(f"response {response} does not exist; this group has responses 0..{len(self) - 1}")

    # ----- adding signals ------------------------------------------------------------------
    def add(self, *columns: pd.Series | pd.DataFrame) -> "Group":
        """Add named Series / DataFrames (as returned by `workbench.credit` functions) to the
        table, aligned on its index. An existing column of the same name is replaced, or, when
        the values cover only some rows (one response), updated on those rows. Their `attrs`
        (how they were computed) go to `meta["columns"]`. Returns the group, for chaining."""
        for values in columns:
            if isinstance(values, pd.Series) and values.name is None:
                raise WorkbenchError("add() needs named columns: give the Series a name")
            frame = values.to_frame() if isinstance(values, pd.Series) else values
            if not frame.index.isin(self.table.index).all():
                raise WorkbenchError("the values' index does not match this group's table; compute them from this group")
            for name in frame.columns:
                if name in self.table and len(frame) < len(self.table):  # a part of the rows: update those
                    self.table.loc[frame.index, name] = frame[name]
                else:
                    self.table[name] = frame[name].reindex(self.table.index)
                if values.attrs:  # how it was computed (mode, beta, models, ...)
                    self.meta.setdefault("columns", {})[name] = dict(values.attrs)
        return self

    # ----- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the group to folder `path` (created; a group saved there is replaced, a run
        is not), in the layout of `Run.save` and with its all-or-nothing write."""
        arrays = dict(self.arrays, rewards=self.rewards, advantages=self.advantages)
        meta = dict(self.meta, kind=KIND, responses=self.responses)
        return Run(self.prompt, self.table, arrays, meta).save(path)

    @classmethod
    def load(cls, path: str | Path) -> "Group":
        if saved_kind(path) != KIND:
            raise WorkbenchError(f"{path} is a saved run, not a group; load it with wb.Run.load")
        run = read_folder(path)
        arrays, meta = dict(run.arrays), dict(run.meta)
        missing = [name for name, held in (("rewards", arrays), ("advantages", arrays), ("responses", meta))
                   if name not in held]
        if missing:
            raise WorkbenchError(f"{path} is damaged: its saved group has no {', '.join(missing)}")
        rewards, advantages = arrays.pop("rewards"), arrays.pop("advantages")
        responses = meta.pop("responses")
        meta.pop("kind")
        return cls(run.text, responses, rewards, run.table, arrays, meta, advantages=advantages)

    def equals(self, other: "Group") -> bool:
        """Same prompt, responses, rewards, advantages, table, arrays and metadata."""
        return (self.prompt == other.prompt and self.responses == other.responses
                and np.array_equal(self.rewards, other.rewards) and np.array_equal(self.advantages, other.advantages)
                and Run(self.prompt, self.table, self.arrays, self.meta).equals(
                    Run(other.prompt, other.table, other.arrays, other.meta)))

    # ----- export --------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """One row per response: text, reward, advantage, length."""
        return pd.DataFrame({"response": range(len(self)), "text": self.responses, "reward": self.rewards,
                             "advantage": self.advantages, "tokens": self.lengths()})

    def to_dict(self) -> dict:
        records = Run(self.prompt, self.table, {}, {}).records()
        return {"model": self.meta.get("model"), "prompt": self.prompt, "responses": self.responses,
                "rewards": self.rewards.tolist(), "advantages": self.advantages.tolist(), "meta": self.meta,
                "tokens": records}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    # ----- views ---------------------------------------------------------------------------
    def show(self, signal: str = "thr"):
        """The responses stacked, each token colored by `signal` (diverging around zero for
        signed signals such as THR), reward and advantage beside each; works offline."""
        from ..widgets.credit import group_strips

        return group_strips(self, signal=signal)

    def __len__(self) -> int:
        return len(self.responses)

    def __repr__(self) -> str:
        return (f"Group({len(self)} responses, {len(self.table)} tokens, model={self.meta.get('model')!r}, "
                f"mean reward={self.rewards.mean():.3f})")
