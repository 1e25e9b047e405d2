"""Train `workbench:tiny-moe`, a small Mixtral with learned routing, on a CPU in minutes.

    python scripts/train_tiny_moe.py                      # writes workbench/data/tiny-moe/
    python scripts/train_tiny_moe.py --steps 200 --out /tmp/tiny-moe   # a quick try

Everything it reads ships with CPython, so it runs offline: the text is the English of
Python's own documentation, `pydoc_data/topics.py` (the language reference topics that
`help()` shows) plus the docstrings of the standard library's modules, classes and
functions (test suites and IDLE left out). That text changes between Python releases, so
its SHA-256 and the Python version are recorded with the loss curve; the same Python, the
same seed and the same thread count give the same weights.

Steps: split the documents 95/5 into train and validation (seeded); train a byte-level BPE
tokenizer (2048 tokens) on the training part; train a Mixtral (hidden 128, 4 layers, 8
experts of width 256, top-2, tied embeddings) on random 128-token windows, adding a
load-balancing loss per layer (`balance_loss`); write safetensors (bf16), config, tokenizer, the loss curve
(JSON and SVG) and what each expert specialized in (token classes by top-1 expert on the
validation text).
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import platform
import random
import string
import sys
import sysconfig
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "workbench" / "data" / "tiny-moe"
ENDOFTEXT = "<|endoftext|>"
SKIPPED_DIRS = {"test", "tests", "site-packages", "idlelib", "lib2to3", "turtledemo"}
TOKEN_CLASSES = ("whitespace", "digits", "punctuation", "word start", "word piece", "mixed")


# ----- data ---------------------------------------------------------------------------------
def documents() -> list[str]:
    """Python's documentation topics and the standard library's docstrings, in a fixed order."""
    from pydoc_data.topics import topics

    docs = [topics[key] for key in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        if set(path.relative_to(stdlib).parts) & SKIPPED_DIRS:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    docs.append(doc)
    return docs


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE (specials first: <|endoftext|> = 0), as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[ENDOFTEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT,
                                   unk_token=ENDOFTEXT, pad_token=ENDOFTEXT, model_max_length=512)


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """All documents as one stream of ids [N], each followed by <|endoftext|>."""
    eos = tokenizer.eos_token_id
    ids = []
    for encoded in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False):
        ids += encoded.ids + [eos]
    return torch.tensor(ids, dtype=torch.long)


def windows(stream: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """[len(starts), length] slices of the stream."""
    return torch.stack([stream[s: s + length] for s in starts.tolist()])


# ----- model and training -------------------------------------------------------------------
def make_model(vocab_size: int, eos: int, args):
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(
        vocab_size=vocab_size, hidden_size=args.hidden, intermediate_size=args.expert_width,
        num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2,
        num_local_experts=args.experts, num_experts_per_tok=args.top_k, max_position_embeddings=512,
        tie_word_embeddings=True, router_aux_loss_coef=0.0, rope_theta=10000.0,  # see balance_loss
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )
    return MixtralForCausalLM._from_config(config, attn_implementation="sdpa", dtype=torch.float32)


def balance_loss(router_logits: tuple[torch.Tensor, ...], top_k: int) -> torch.Tensor:
    """Switch-Transformer load balancing (Fedus et al. 2021) for each layer, averaged over
    layers: E * sum_e f_e P_e, f_e the share of the top-k assignments that go to expert e
    and P_e its mean router probability; 1 when balanced. transformers' Mixtral loss pools
    all layers' tokens instead, which leaves single layers free to starve experts."""
    losses = []
    for logits in router_logits:  # [N, E] per layer
        probs = torch.softmax(logits.float(), dim=-1)
        chosen = torch.nn.functional.one_hot(probs.topk(top_k, dim=-1).indices, logits.shape[-1]).float()  # [N, k, E]
        losses.append(logits.shape[-1] * (chosen.mean(dim=(0, 1)) * probs.mean(dim=0)).sum())
    return torch.stack(losses).mean()


def learning_rate(step: int, args) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model, batch: torch.Tensor, size: int = 16) -> float:
    model.eval()
    losses = [model(input_ids=chunk, labels=chunk, output_router_logits=False).loss.item()
              for chunk in batch.split(size)]
    model.train()
    return sum(losses) / len(losses)


def train(model, train_ids: torch.Tensor, val_batch: torch.Tensor, args) -> dict:
    generator = torch.Generator().manual_seed(args.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95))
    curve = {"step": [], "tokens": [], "loss": [], "aux_loss": [], "val_step": [], "val_loss": []}
    model.train()
    started = time.perf_counter()
    for step in range(args.steps):
        starts = torch.randint(0, len(train_ids) - args.seq, (args.batch,), generator=generator)
        batch = windows(train_ids, starts, args.seq)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        # the model shifts the labels itself: inputs and labels are the same window
        out = model(input_ids=batch, labels=batch, output_router_logits=True)
        balance = balance_loss(out.router_logits, args.top_k)
        (out.loss + args.aux_coef * balance).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.log_every == 0 or step == args.steps - 1:
            lm_loss = out.loss.item()
            curve["step"].append(step)
            curve["tokens"].append((step + 1) * args.batch * args.seq)
            curve["loss"].append(round(lm_loss, 5))
            curve["aux_loss"].append(round(balance.item(), 5))
        if step % args.eval_every == 0 or step == args.steps - 1:
            curve["val_step"].append(step)
            curve["val_loss"].append(round(evaluate(model, val_batch), 5))
            print(f"step {step:5d}  loss {curve['loss'][-1]:.3f}  aux {curve['aux_loss'][-1]:.3f}  "
                  f"val {curve['val_loss'][-1]:.3f}  {time.perf_counter() - started:6.0f} s", flush=True)
    curve["seconds"] = round(time.perf_counter() - started, 1)
    return curve


# ----- what the experts learned ---------------------------------------------------------------
def token_class(piece: str) -> str:
    """Coarse class of a decoded token: whitespace, digits, punctuation, a word's first
    piece (after a space), a piece inside a word, or mixed."""
    if not piece.strip():
        return "whitespace"
    core = piece[1:] if piece.startswith(" ") else piece
    if core.isdigit():
        return "digits"
    if all(c in string.punctuation for c in core.strip()):
        return "punctuation"
    if core.isalpha():
        return "word start" if piece.startswith(" ") else "word piece"
    return "mixed"


@torch.no_grad()
def expert_profile(model, tokenizer, val_ids: torch.Tensor, n_tokens: int = 16384) -> dict:
    """Per MoE layer: which token classes each expert's top-1 tokens are, as lift over the
    class's overall share (P(class | expert) / P(class)), and the share of the token-class
    entropy that the top-1 expert explains (mutual information / H(class))."""
    model.eval()
    ids = val_ids[: n_tokens - n_tokens % 256].view(-1, 256)
    top1 = [[] for _ in range(model.config.num_hidden_layers)]
    for chunk in ids.split(16):
        out = model(input_ids=chunk, output_router_logits=True)
        for layer, logits in enumerate(out.router_logits):
            top1[layer].append(logits.argmax(-1))
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    classes = torch.tensor([TOKEN_CLASSES.index(token_class(p)) for p in pieces])[ids.reshape(-1)]
    n_classes, n_experts = len(TOKEN_CLASSES), model.config.num_local_experts
    class_share = torch.bincount(classes, minlength=n_classes).double() / len(classes)
    profile = {"classes": list(TOKEN_CLASSES), "class_share": [round(v, 4) for v in class_share.tolist()], "layers": []}
    for layer, chosen in enumerate(top1):
        chosen = torch.cat(chosen)
        joint = torch.bincount(chosen * n_classes + classes, minlength=n_experts * n_classes).view(n_experts, n_classes)
        joint = joint.double() / joint.sum()
        expert_share = joint.sum(1)
        given = joint / expert_share.clamp_min(1e-12)[:, None]
        lift = given / class_share.clamp_min(1e-12)
        independent = expert_share[:, None] * class_share[None, :]
        mask = joint > 0
        mutual = (joint[mask] * (joint[mask] / independent[mask]).log()).sum()
        class_entropy = -(class_share[class_share > 0] * class_share[class_share > 0].log()).sum()
        experts = []
        for e in range(n_experts):
            best = int(lift[e].argmax())
            experts.append({"expert": e, "load": round(expert_share[e].item(), 4), "top_class": TOKEN_CLASSES[best],
                            "p_class": round(given[e, best].item(), 3), "lift": round(lift[e, best].item(), 2),
                            "p_classes": [round(v, 3) for v in given[e].tolist()]})
        profile["layers"].append({"layer": layer, "class_information": round((mutual / class_entropy).item(), 4),
                                  "experts": experts})
    return profile


# ----- outputs ----------------------------------------------------------------------------------
def loss_svg(curve: dict, width: int = 640, height: int = 360) -> str:
    """A self-contained SVG line chart of the training and validation loss."""
    left, right, top, bottom = 56, 16, 28, 44
    steps = curve["step"] + curve["val_step"]
    values = curve["loss"] + curve["val_loss"]
    x_max, y_min, y_max = max(steps) or 1, math.floor(min(values)), math.ceil(max(values))

    def x(step):
        return left + (width - left - right) * step / x_max

    def y(value):
        return top + (height - top - bottom) * (y_max - value) / (y_max - y_min)

    def line(xs, ys, color, dash=""):
        points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, ys))
        return f'<polyline fill="none" stroke="{color}" stroke-width="1.6" {dash} points="{points}"/>'

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             'font-size="12">', '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="18" font-size="14">workbench:tiny-moe: cross-entropy (nats/token)</text>']
    for value in range(y_min, y_max + 1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 8}" y="{y(value) + 4:.1f}" text-anchor="end">{value}</text>')
    for tick in range(0, x_max + 1, max(1, int(round(x_max / 5, -2)))):
        parts.append(f'<text x="{x(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle">step</text>')
    parts.append(line(curve["step"], curve["loss"], "#1f77b4"))
    parts.append(line(curve["val_step"], curve["val_loss"], "#d62728", 'stroke-dasharray="5,3"'))
    parts.append(f'<text x="{width - right - 150}" y="{top + 14}" fill="#1f77b4">train</text>'
                 f'<text x="{width - right - 90}" y="{top + 14}" fill="#d62728">validation</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def model_card(record: dict) -> str:
    """README.md for the model folder: what it is, how it was made, what its experts do."""
    curve, data, args = record["curve"], record["data"], record["args"]
    lines = [
        "# workbench:tiny-moe", "",
        f"A {record['parameters'] / 1e6:.2f}M-parameter Mixtral ({args['layers']} layers, hidden {args['hidden']}, "
        f"{args['experts']} experts of width {args['expert_width']}, top-{args['top_k']}, tied embeddings, "
        f"{args['vocab']}-token byte-level BPE) with learned routing, for Token Workbench's routing views "
        "offline. It writes Python-documentation-flavoured English; it is not a useful language model.", "",
        "Made by `scripts/train_tiny_moe.py` (seeded; same Python, seed and thread count give the same "
        "weights). Load it with `workbench.load(\"workbench:tiny-moe\")`.", "",
        f"- data: {data['source']}, {data['documents']} documents, {data['characters']:,} characters "
        f"(sha256 {data['sha256'][:16]}…), {data['train_tokens']:,} training / {data['validation_tokens']:,} "
        "validation tokens (documents split 95/5)",
        f"- training: {args['steps']} steps of {args['batch']} x {args['seq']} tokens, AdamW, peak lr {args['lr']}, "
        f"per-layer load-balancing loss x {args['aux_coef']}; {record['minutes']} min on "
        f"{args['threads']} CPU threads (Python {record['environment']['python']}, torch "
        f"{record['environment']['torch']}, transformers {record['environment']['transformers']})",
        f"- loss: {curve['loss'][0]:.2f} -> {curve['loss'][-1]:.2f} (train), {curve['val_loss'][0]:.2f} -> "
        f"{curve['val_loss'][-1]:.2f} (validation), nats/token; curve in `training.json` and `loss_curve.svg`",
        f"- weights: {record['weights_mb']} MB, {record['weights_dtype']} safetensors", "",
        "## What the experts learned", "",
        "Top-1 expert of each validation token, by token class. `information`: the share of the token-class "
        "entropy that the top-1 expert explains (mutual information / H(class)); for each expert its load "
        "(share of tokens) and the class it is most enriched in (P(class | expert), and lift over the class's "
        "overall share).", "",
        "| layer | information | experts: load, enriched class (P, lift) |", "|---|---|---|",
    ]
    for layer in record["experts"]["layers"]:
        experts = "; ".join(f"{e['expert']}: {e['load']:.0%}, {e['top_class']} ({e['p_class']:.0%}, x{e['lift']})"
                            for e in layer["experts"])
        lines.append(f"| {layer['layer']} | {layer['class_information']:.2f} | {experts} |")
    lines += ["", "Training text: CPython's documentation and docstrings, © Python Software Foundation, "
              "PSF License.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--expert-width", type=int, default=256)
    parser.add_argument("--aux-coef", type=float, default=0.02, help="weight of the per-layer balance loss")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=100)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    started = time.perf_counter()

    docs = documents()
    corpus_hash = hashlib.sha256("\x00".join(docs).encode()).hexdigest()
    order = list(range(len(docs)))
    random.Random(args.seed).shuffle(order)
    n_val = len(docs) // 20
    val_docs, train_docs = [docs[i] for i in order[:n_val]], [docs[i] for i in order[n_val:]]
    tokenizer = train_tokenizer(train_docs, args.vocab)
    train_ids, val_ids = token_stream(tokenizer, train_docs), token_stream(tokenizer, val_docs)
    val_starts = torch.arange(0, len(val_ids) - args.seq, args.seq)[:64]
    val_batch = windows(val_ids, val_starts, args.seq)
    print(f"{len(docs)} documents, {sum(map(len, docs))} characters; {len(train_ids)} training and "
          f"{len(val_ids)} validation tokens; tokenizer {len(tokenizer)} tokens "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

    model = make_model(len(tokenizer), tokenizer.eos_token_id, args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters", flush=True)
    curve = train(model, train_ids, val_batch, args)
    profile = expert_profile(model, tokenizer, val_ids)

    args.out.mkdir(parents=True, exist_ok=True)
    model.config.use_cache = True
    model.to(torch.bfloat16).save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    weights = args.out / "model.safetensors"
    record = {
        "model": "workbench:tiny-moe", "architecture": "MixtralForCausalLM", "parameters": n_params,
        "weights_mb": round(weights.stat().st_size / 1e6, 2), "weights_dtype": "bfloat16",
        "data": {"source": "pydoc_data/topics.py + standard-library docstrings (CPython)",
                 "documents": len(docs), "characters": sum(map(len, docs)), "sha256": corpus_hash,
                 "train_tokens": len(train_ids), "validation_tokens": len(val_ids)},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": __import__("transformers").__version__, "machine": platform.machine()},
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "curve": curve,
        "experts": profile,
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / "loss_curve.svg").write_text(loss_svg(curve))
    (args.out / "README.md").write_text(model_card(record))
    print(f"loss {curve['loss'][0]:.3f} -> {curve['loss'][-1]:.3f}, validation {curve['val_loss'][0]:.3f} -> "
          f"{curve['val_loss'][-1]:.3f}; {record['minutes']} min; wrote {args.out}")
    for layer in profile["layers"]:
        summary = ", ".join(f"{e['expert']}:{e['top_class']} x{e['lift']}" for e in layer["experts"])
        print(f"layer {layer['layer']}: I(class; expert)/H(class) = {layer['class_information']:.2f}  {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
