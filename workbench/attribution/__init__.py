"""Attribution: which input tokens made the model produce each token.

One module per method family: `gradient` (saliency, input x gradient, integrated gradients,
many targets per backward), `occlusion` (leave-one-out at token, word or sentence level),
`reagent` (ReAGent, by replacement); `target` defines what is explained (log p(y), or its
contrast with a foil), `spans` the words and sentences, `budget` the memory estimates.
`model.attribute(...)` (`workbench.pipelines.attribute`) runs them and returns a `Run`;
`aggregate(run, "word")` sums its sources into words or sentences.
"""
from .aggregate import aggregate

__all__ = ["aggregate"]
