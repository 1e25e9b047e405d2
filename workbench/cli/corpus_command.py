"""`workbench corpus INPUT --signals ... --out DIR`: `wb.corpus` from the command line.

Prints the manifest's counts when done; run the same command again to resume a killed run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import WorkbenchError


def add_parser(commands, model_options) -> None:
    corpus = commands.add_parser("corpus", help="signals over every document of a corpus, into a Parquet folder "
                                                "(resumable)")
    corpus.add_argument("input", type=Path, help="a text file (one document a line), .jsonl, .parquet, or a folder "
                                                 "saved by datasets' save_to_disk")
    model_options(corpus)
    corpus.add_argument("--signals", default="uncertainty", help="comma-separated signal names (default: uncertainty)")
    corpus.add_argument("--out", type=Path, required=True, help="the corpus folder (new, or one to resume)")
    corpus.add_argument("--reference", default=None,
                        help="a reference model with the same tokenizer: adds reference_surprisal and excess_loss (RHO-1)")
    corpus.add_argument("--text-field", default="text", help="JSONL field / Parquet column of the text (default: text)")
    corpus.add_argument("--alternatives", type=int, default=0, help="top-k alternatives kept per token (default: 0)")
    corpus.add_argument("--batch-size", type=int, default=16, help="documents per forward (default: 16)")
    corpus.add_argument("--max-batch-tokens", type=int, default=8192,
                        help="padded tokens per forward, batch x longest (default: 8192)")
    corpus.add_argument("--shard-size", type=int, default=256, help="documents per shard (default: 256)")
    corpus.add_argument("--max-tokens", type=int, default=None, help="longest segment (default: the model's context)")
    corpus.add_argument("--long", choices=("error", "truncate", "split", "skip"), default="error",
                        help="a document longer than --max-tokens: error (default), truncate, split or skip")
    corpus.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local (this process) or ray (Ray Data actors; pip install 'token-workbench[ray]')")
    corpus.add_argument("--actors", type=int, default=1, help="Ray actors, one model each (default: 1)")
    corpus.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per Ray actor (default: 0)")
    corpus.add_argument("--ray-address", default=None, help="a Ray cluster's address (default: start a local Ray)")


def cmd_corpus(args) -> int:
    if not args.input.exists():
        raise WorkbenchError(f"corpus input not found: {args.input}")
    if args.out.exists() and not args.out.is_dir():
        raise WorkbenchError(f"--out {args.out} is a file; give a folder")
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    reference = None if args.reference is None else wb.load(args.reference, dtype=args.dtype, device=args.device)
    folder = wb.corpus(
        model, args.input, out=args.out, signals=args.signals, reference=reference, text_field=args.text_field,
        top_k=args.alternatives, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens,
        shard_size=args.shard_size, max_tokens=args.max_tokens, long=args.long, engine=args.engine,
        actors=args.actors, gpus_per_actor=args.gpus_per_actor, ray_address=args.ray_address,
        progress=sys.stderr.isatty(),
    )
    print(json.dumps(folder.manifest["counts"], indent=2))
    return 0
