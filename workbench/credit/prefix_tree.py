"""The prefix tree of a group: where its responses share a beginning, where they branch,
and how often the responses below each prefix succeed.

Token level: response i's token t sits at trie node (i, t) = the set of responses that
agree with it on tokens 0..t. The trie is built one depth at a time, vectorized: the nodes
at depth t are the distinct (node at depth t-1, token t) pairs. For each token it gives:

    shared        responses sharing the prefix through this token (1: the response is alone)
    prefix_success share of those responses that are correct
    branch        this token starts a branch: the prefix before it is continued differently
                  by other responses (the responses' first tokens branch when they differ)

Node level (for views): chains of tokens shared by the same responses are merged into one
node (a radix tree): `nodes` has node, parent (-1: the prompt), start (position of its first
token), text, token_ids, responses, count, correct, success_rate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..results.group import Group

PAD = -1


def trie_nodes(ids: np.ndarray) -> np.ndarray:
    """Trie node of every token. ids: [G, T] token ids, PAD after a response's end.
    Returns [G, T] int64 node ids (PAD where ids is PAD), numbered depth by depth."""
    nodes = np.full(ids.shape, PAD, dtype=np.int64)
    parent = np.full(ids.shape[0], PAD, dtype=np.int64)  # the root
    offset = 0
    for t in range(ids.shape[1]):
        alive = ids[:, t] != PAD
        if not alive.any():
            break
        pairs = np.stack([parent[alive], ids[alive, t]], axis=1)
        _, inverse = np.unique(pairs, axis=0, return_inverse=True)
        nodes[alive, t] = offset + inverse.ravel()
        offset += int(inverse.max()) + 1
        parent = nodes[:, t]
    return nodes


@dataclass
class PrefixTree:
    group: Group
    token_nodes: np.ndarray  # [G, T] trie node of each token (PAD after the end)
    correct: np.ndarray  # [G] bool

    def columns(self) -> pd.DataFrame:
        """`shared`, `prefix_success` and `branch` for every table row, for `group.add`."""
        nodes, correct = self.token_nodes, self.correct
        count = np.bincount(nodes[nodes != PAD])
        hits = np.bincount(nodes[nodes != PAD], weights=np.broadcast_to(correct[:, None], nodes.shape)[nodes != PAD])
        children = self._children_counts()
        table = self.group.table
        g, t = table["response"].to_numpy(), table["position"].to_numpy()
        node = nodes[g, t]
        parent_children = np.where(t > 0, children[nodes[g, np.maximum(t - 1, 0)]], self._root_children())
        return pd.DataFrame({"shared": count[node].astype(np.int64), "prefix_success": hits[node] / count[node],
                             "branch": parent_children > 1}, index=table.index)

    def _children_counts(self) -> np.ndarray:
        nodes = self.token_nodes
        pairs = np.stack([nodes[:, :-1].ravel(), nodes[:, 1:].ravel()], axis=1)
        pairs = np.unique(pairs[(pairs != PAD).all(axis=1)], axis=0)
        return np.bincount(pairs[:, 0], minlength=int(nodes.max()) + 1)

    def _root_children(self) -> int:
        first = self.token_nodes[:, 0]
        return len(np.unique(first[first != PAD]))

    @property
    def nodes(self) -> pd.DataFrame:
        """The radix tree: chains of tokens shared by the same set of responses, one row each
        (see the module docstring)."""
        nodes, correct, ids = self.token_nodes, self.correct, padded_ids(self.group)
        texts = self.group.grid("token", fill="")  # [G, T]: a lookup per token in the table's index was the cost
        count = np.bincount(nodes[nodes != PAD])
        merged: dict[int, int] = {}  # trie node -> radix node
        rows: list[dict] = []
        for g in range(nodes.shape[0]):
            for t in range(nodes.shape[1]):
                node = nodes[g, t]
                if node == PAD:
                    break
                if node in merged:
                    continue
                parent_trie = nodes[g, t - 1] if t > 0 else PAD
                continues = (t > 0 and count[node] == count[parent_trie] and parent_trie in merged)
                if continues:
                    radix = merged[parent_trie]
                    rows[radix]["token_ids"].append(int(ids[g, t]))
                    rows[radix]["text"] += texts[g, t]
                else:
                    members = np.flatnonzero(nodes[:, t] == node)
                    radix = len(rows)
                    rows.append({"node": radix, "parent": merged.get(parent_trie, -1), "start": t,
                                 "text": texts[g, t], "token_ids": [int(ids[g, t])],
                                 "responses": members.tolist(), "count": len(members),
                                 "correct": int(correct[members].sum())})
                merged[node] = radix
        frame = pd.DataFrame(rows, columns=["node", "parent", "start", "text", "token_ids", "responses", "count", "correct"])
        frame["success_rate"] = frame["correct"] / frame["count"]
        return frame


def padded_ids(group: Group) -> np.ndarray:
    """[G, T] the responses' token ids, PAD after each one's end."""
    return group.grid("token_id", fill=PAD, dtype=np.int64)


def prefix_tree(group: Group, *, threshold: float = 0.0) -> PrefixTree:
    """The prefix tree of `group`'s responses; correct = reward > threshold."""
    return PrefixTree(group, trie_nodes(padded_ids(group)), group.correct(threshold))
