"""Inseq 0.7.1 on the attribution benchmark's short case, for benchmarks/attribution.py to set
side by side (a measurement; Inseq is never a dependency of the package).

It runs in its own environment, started by benchmarks/attribution.py (--inseq-python) once per
round, with the embedded model's cached folder (written by the workbench's first `wb.load()`):

    python3 -m venv /tmp/inseq-venv && /tmp/inseq-venv/bin/pip install torch==2.13.0 inseq==0.7.1
    /tmp/inseq-venv/bin/python benchmarks/attribution_inseq.py FOLDER OUT.json

It attributes the same 23 + 15 tokens with saliency, input x gradient and integrated gradients
(32 steps: Captum's Gauss-Legendre rule, Inseq's baseline, the unknown token's embedding at every
position but an eos) of log p(y) (Inseq's
"probability" step function with logprob=True: the workbench's f_t), after one warm-up call
of each method (integrated gradients warms up with 2 steps), and writes each method's time and
its [target, source] matrix reduced over the embedding as the workbench reduces it (the norm
for saliency, the sum for the others) to OUT.json.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from attribution import CONTINUATION, CONTINUATION_TOKENS, PROMPT, PROMPT_TOKENS  # noqa: E402 (the same case)

# Captum's integration rule stays its default, Gauss-Legendre: Inseq's `attribute` takes the
# keyword `method` for itself (the attribution method), so Captum's `method` cannot be passed
METHODS = {"saliency": {}, "input_x_gradient": {}, "integrated_gradients": {"n_steps": 32}}
WARM_UP = {"integrated_gradients": {"n_steps": 2}}


def main(folder: str, out: str) -> None:
    import inseq

    record = {"inseq": inseq.__version__ if hasattr(inseq, "__version__") else "0.7.1", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "methods": {}}
    for method, options in METHODS.items():
        model = inseq.load_model(folder, method)
        tokenizer = model.tokenizer
        prompt_ids = tokenizer(PROMPT)["input_ids"][:PROMPT_TOKENS]
        continuation_ids = tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"][:CONTINUATION_TOKENS]
        prompt = tokenizer.decode(prompt_ids)
        whole = tokenizer.decode(prompt_ids + continuation_ids)
        common = dict(generated_texts=whole, show_progress=False, attributed_fn="probability", logprob=True)
        model.attribute(prompt, **common, **WARM_UP.get(method, options))
        start = time.perf_counter()
        result = model.attribute(prompt, **common, **options)
        seconds = time.perf_counter() - start
        raw = result.sequence_attributions[0].target_attributions  # [tokens, targets, d]
        reduced = raw.norm(dim=-1) if method == "saliency" else raw.sum(-1)
        record["methods"][method] = {"seconds": seconds, **options,
                                     "values": [[None if v != v else v for v in row] for row in reduced.T.tolist()]}
        print(f"inseq {method}: {seconds:.2f} s", file=sys.stderr)
    Path(out).write_text(json.dumps(record) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
