"""Inseq 0.7.1 on the attribution benchmark's short case, for benchmarks/attribution.py to set
side by side (a measurement; Inseq is never a dependency of the package).

Run it in its own environment, with the embedded model's cached folder (written by the
workbench's first `wb.load()`):

    python3 -m venv /tmp/inseq-venv && /tmp/inseq-venv/bin/pip install torch==2.13.0 inseq==0.7.1
    /tmp/inseq-venv/bin/python benchmarks/attribution_inseq.py ~/.cache/token-workbench/smollm2-135m-*/

It attributes the same 23 + 15 tokens with saliency, input x gradient and integrated gradients
(32 steps, right Riemann sum, zero baseline), with Inseq's default step function, the
probability p(y) (its "crossentropy" function fails on a decoder-only model in 0.7.1: a target
batch of 0), and writes each method's time and its [target, source] matrix reduced over the
embedding as the workbench reduces it (the norm for saliency, the sum for the others) to
benchmarks/results/attribution-inseq-cpu.json. The gradient of p(y) is p(y) times that of
log p(y), so saliency and input x gradient compare after scaling by p(y); integrated gradients
of p and of log p differ (the path is not linear in the score) and are compared by time only.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from attribution import CONTINUATION, CONTINUATION_TOKENS, PROMPT, PROMPT_TOKENS  # noqa: E402 (the same case)

OUT = Path(__file__).parent / "results" / "attribution-inseq-cpu.json"
METHODS = {"saliency": {}, "input_x_gradient": {}, "integrated_gradients": {"n_steps": 32, "method": "riemann_right"}}


def main(folder: str) -> None:
    import inseq

    record = {"inseq": "0.7.1", "torch": torch.__version__, "threads": torch.get_num_threads(), "methods": {}}
    for method, options in METHODS.items():
        model = inseq.load_model(folder, method)
        tokenizer = model.tokenizer
        prompt_ids = tokenizer(PROMPT)["input_ids"][:PROMPT_TOKENS]
        continuation_ids = tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"][:CONTINUATION_TOKENS]
        prompt = tokenizer.decode(prompt_ids)
        whole = tokenizer.decode(prompt_ids + continuation_ids)
        model.attribute(prompt, generated_texts=whole, show_progress=False, **options)  # warm-up
        start = time.perf_counter()
        out = model.attribute(prompt, generated_texts=whole, show_progress=False, **options)
        seconds = time.perf_counter() - start
        raw = out.sequence_attributions[0].target_attributions  # [tokens, targets, d]
        reduced = raw.norm(dim=-1) if method == "saliency" else raw.sum(-1)
        record["methods"][method] = {"seconds": seconds, **options,
                                     "values": [[None if v != v else v for v in row] for row in reduced.T.tolist()]}
        print(f"inseq {method}: {seconds:.2f} s", file=sys.stderr)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
