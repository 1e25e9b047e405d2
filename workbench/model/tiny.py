"""Tiny random models for tests: no downloads, no trained weights.

`tiny_tokenizer()` is a byte-level BPE tokenizer (256 byte symbols, 100 merges learned from a
few embedded English sentences, ChatML special tokens and chat template), built in-process
with the `tokenizers` library. `tiny_model(family)` is a randomly initialized causal LM of
that family, made from a small config (hidden 64, 4 attention heads, 2 KV heads where the
family has GQA) and wrapped in a `Model`. The weights are random: the models exercise the
code paths of each family (module layout, attention variants, MoE routing) on CPU in
milliseconds, and their outputs mean nothing.

    from workbench.model.tiny import FAMILIES, tiny_model
    model = tiny_model("mixtral")           # or workbench.load("tiny:mixtral")
"""
from __future__ import annotations

import copy
import functools

import torch

from ..errors import WorkbenchError
from .families.qwen2 import CHATML
from .handle import Model

FAMILIES: tuple[str, ...] = (
    "llama", "gpt2", "qwen2", "mixtral", "qwen2_moe", "olmoe", "gpt_oss", "deepseek_v3",
)

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
N_MERGES = 100

# What the BPE merges are learned from: fixed, so the vocabulary is the same in every process.
CORPUS = (
    "The capital of France is Paris.",
    "The quick brown fox jumps over the lazy dog.",
    "What is seven times eight? The answer is fifty-six.",
    "Write a haiku about rain falling on the roof at night.",
    "A language model predicts the next token from the tokens before it.",
    "Attention lets every token look back at the tokens that came before.",
    "Experts in a mixture of experts layer are chosen by a router for each token.",
    "The weather today is sunny with a chance of rain in the evening.",
    "She sells sea shells by the sea shore, and the shells she sells are sea shells.",
    "In the beginning there was nothing, and then there was the first token.",
    "Please answer the question and explain your reasoning step by step.",
    "The students read the book, wrote their notes and talked about the ending.",
    "Two plus two is four, and four plus four is eight.",
    "Researchers measure the entropy of the next token distribution at each position.",
    "The river runs through the green valley towards the old stone bridge.",
    "Thank you for the help; the results are in the table below.",
)


@functools.lru_cache(maxsize=1)
def _trained_tokenizer():
    """Train once per process: byte-level BPE, specials first (ids 0, 1, 2), then bytes, merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = [ENDOFTEXT, IM_START, IM_END]
    trainer = trainers.BpeTrainer(
        vocab_size=len(specials) + 256 + N_MERGES,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=CHATML,
    )


def tiny_tokenizer():
    """A fast byte-level BPE tokenizer with ChatML special tokens and chat template.

    No BOS is added; offsets (`return_offsets_mapping=True`) are character spans of the text.
    Each call returns its own copy of the cached tokenizer, so a caller that changes it
    (padding side, template) does not change it for others.
    """
    return copy.deepcopy(_trained_tokenizer())


def _configs(vocab_size: int, token_id: int) -> dict:
    """family -> config of a tiny model with that family's distinctive parts."""
    from transformers import (
        DeepseekV3Config, GPT2Config, GptOssConfig, LlamaConfig, MixtralConfig, OlmoeConfig,
        Qwen2Config, Qwen2MoeConfig,
    )

    ids = dict(bos_token_id=token_id, eos_token_id=token_id, pad_token_id=token_id)
    common = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, **ids,
    )
    moe = dict(num_experts_per_tok=2)
    return {
        "llama": lambda: LlamaConfig(**common),
        "gpt2": lambda: GPT2Config(
            vocab_size=vocab_size, n_embd=64, n_inner=128, n_layer=2, n_head=4, n_positions=512, **ids,
        ),
        "qwen2": lambda: Qwen2Config(**common),
        "mixtral": lambda: MixtralConfig(**common, **moe, num_local_experts=4),
        "qwen2_moe": lambda: Qwen2MoeConfig(
            **common, **moe, num_experts=4, moe_intermediate_size=64, shared_expert_intermediate_size=128,
        ),
        "olmoe": lambda: OlmoeConfig(**common, **moe, num_experts=4),
        # Alternating sliding (window 8, visible on short texts) and full attention layers,
        # attention sinks, biased router; YaRN RoPE scaled to the 512-position context.
        "gpt_oss": lambda: GptOssConfig(
            **common, **moe, num_local_experts=4, head_dim=16, sliding_window=8,
            layer_types=["sliding_attention", "full_attention"],
            rope_parameters={
                "rope_type": "yarn", "rope_theta": 150000.0, "factor": 4.0, "beta_fast": 32.0,
                "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 128,
            },
        ),
        # Multi-head latent attention (low-rank q and kv; as in the real model, one key head
        # per query head); layer 0 dense, layers 1-2 MoE with a shared expert and sigmoid
        # group-limited routing.
        "deepseek_v3": lambda: DeepseekV3Config(
            **{**common, "num_hidden_layers": 3, "num_key_value_heads": 4}, **moe, n_routed_experts=4, n_shared_experts=1,
            moe_intermediate_size=64, first_k_dense_replace=1, n_group=2, topk_group=1,
            q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16,
        ),
    }


def tiny_model(family: str, *, seed: int = 0) -> Model:
    """A randomly initialized causal LM of `family` (one of `FAMILIES`), fp32, eval mode, on
    CPU, with `tiny_tokenizer()`. The same seed gives the same weights; the global torch RNG
    is left as it was."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoModelForCausalLM

    if family not in FAMILIES:
        raise WorkbenchError(f"unknown tiny model family '{family}'; families: {', '.join(FAMILIES)}")
    tokenizer = tiny_tokenizer()
    config = _configs(len(tokenizer), tokenizer.eos_token_id)[family]()
    sdpa = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]._supports_sdpa  # GPT-OSS: eager only (sinks)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hf = AutoModelForCausalLM.from_config(
            config, attn_implementation="sdpa" if sdpa else "eager", dtype=torch.float32
        )
    return Model(hf.eval(), tokenizer, name=f"tiny:{family}")
