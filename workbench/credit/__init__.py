"""RL token credit: which tokens of a group's responses carry the reward.

    group = model.rollouts("What is 7 * 8?", n=8, reward=wb.rewards.exact_answer("56"))
    group.table[["response", "token", "advantage", "thr", "d3s"]]    # THR and D3S come with rollouts
    group.add(credit.contrastive_critical_tokens(group, positive, negative))
    group.add(credit.rollout_critical_tokens(model, group, response=3).columns())
    group.add(credit.implicit_reward(policy, reference, group))
    group.add(credit.prefix_tree(group).columns())
    credit.r2r_divergence(small, large, group)

Definitions and papers: each module's docstring (docs/signals.md, "Credit in reinforcement learning").
"""
from .critical import CriticalTokens, cdpo_scores, contrastive_critical_tokens, find_critical, rollout_critical_tokens
from .forward import token_logprobs
from .implicit import d3s_priority, implicit_reward, implicit_token_reward
from .prefix_tree import PrefixTree, prefix_tree, trie_nodes
from .r2r import r2r_divergence
from .thr import reweighted_advantages, select_parameters, sign_agreement, token_hidden_reward

__all__ = ["CriticalTokens", "PrefixTree", "cdpo_scores", "contrastive_critical_tokens", "d3s_priority",
           "find_critical", "implicit_reward", "implicit_token_reward", "prefix_tree", "r2r_divergence",
           "reweighted_advantages", "rollout_critical_tokens", "select_parameters", "sign_agreement",
           "token_hidden_reward", "token_logprobs", "trie_nodes"]
