"""Family adapters on tiny random models of every family: the adapter's paths (backbone,
layers, final norm, lm_head, routers) are checked against the model's own forward."""
import pytest
import torch

import workbench
from workbench.errors import WorkbenchError
from workbench.model.tiny import FAMILIES, tiny_model, tiny_tokenizer

MOE = {"mixtral", "qwen2_moe", "olmoe", "gpt_oss", "deepseek_v3"}
ADAPTER_NAMES = {
    "llama": "llama", "gpt2": "gpt2", "qwen2": "qwen2", "mixtral": "mixtral",
    "qwen2_moe": "qwen2_moe", "olmoe": "olmoe", "gpt_oss": "gpt_oss", "deepseek_v3": "deepseek",
}
TEXT = "The capital of France is Paris. What is seven times eight?"


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    return tiny_model(request.param)


@pytest.fixture(scope="module")
def input_ids():
    return tiny_tokenizer()(TEXT, return_tensors="pt").input_ids  # [1, T]


def test_adapter_is_picked_by_family(model):
    family = model.name.split(":", 1)[1]
    assert model.adapter.name == ADAPTER_NAMES[family]
    assert model.dtype == torch.float32 and not model.hf.training


def test_layers_match_config(model):
    config = model.hf.config
    expected = getattr(config, "num_hidden_layers", None) or config.n_layer
    assert len(model.adapter.layers(model.hf)) == expected == model.n_layers


def test_backbone_and_head_reproduce_logits(model, input_ids):
    hf, adapter = model.hf, model.adapter
    with torch.no_grad():
        expected = hf(input_ids).logits  # [1, T, V]
        hidden = adapter.backbone(hf)(input_ids=input_ids).last_hidden_state  # [1, T, d]
        logits = adapter.logits(hf, hidden)
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(logits, expected)


def test_final_norm_of_last_layer_is_last_hidden_state(model, input_ids):
    hf, adapter = model.hf, model.adapter
    captured = []

    def keep(module, args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = adapter.layers(hf)[-1].register_forward_hook(keep)
    try:
        with torch.no_grad():
            hidden = adapter.backbone(hf)(input_ids=input_ids).last_hidden_state  # [1, T, d]
    finally:
        handle.remove()
    assert len(captured) == 1
    with torch.no_grad():
        normed = adapter.final_norm(hf)(captured[0])
    torch.testing.assert_close(normed, hidden)


def test_routers_fire_on_moe_layers_only(model, input_ids):
    family = model.name.split(":", 1)[1]
    routers = model.adapter.routers(model.hf)
    if family not in MOE:
        assert routers == []
        return
    assert len(routers) > 0
    fired = []
    handles = [
        router.register_forward_hook(lambda module, args, output, index=index: fired.append(index))
        for index, router in routers
    ]
    try:
        with torch.no_grad():
            model.hf(input_ids)
    finally:
        for handle in handles:
            handle.remove()
    assert sorted(fired) == [index for index, _ in routers]


def test_deepseek_first_layer_is_dense():
    model = tiny_model("deepseek_v3")
    assert [index for index, _ in model.adapter.routers(model.hf)] == [1, 2]


@pytest.mark.parametrize("family", FAMILIES)
def test_load_by_name(family):
    model = workbench.load(f"tiny:{family}", device="cpu")
    assert model.name == f"tiny:{family}"
    assert model.adapter.name == ADAPTER_NAMES[family]
    assert model.vocab_size == len(model.tokenizer)


def test_same_seed_same_weights():
    first, second, other = tiny_model("mixtral"), tiny_model("mixtral"), tiny_model("mixtral", seed=1)
    weights = [dict(m.hf.named_parameters()) for m in (first, second, other)]
    name = "model.layers.0.mlp.gate.weight"
    torch.testing.assert_close(weights[0][name], weights[1][name])
    assert not torch.equal(weights[0][name], weights[2][name])


def test_unknown_family_lists_families():
    with pytest.raises(WorkbenchError, match="gpt_oss"):
        tiny_model("bert")


def test_tokenizer_offsets_are_within_text():
    text = "Héllo wörld, the quick brown fox! 日本"
    encoded = tiny_tokenizer()(text, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    assert len(offsets) == len(encoded["input_ids"]) > 0
    assert all(0 <= start <= end <= len(text) for start, end in offsets)
    assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
    assert tiny_tokenizer().decode(encoded["input_ids"]) == text


def test_tokenizer_adds_no_bos_and_knows_chatml():
    tokenizer = tiny_tokenizer()
    assert tokenizer("The")["input_ids"] == tokenizer.convert_tokens_to_ids(["The"])
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") != tokenizer.unk_token_id


def test_chat_template_renders():
    tokenizer = tiny_tokenizer()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_tokenizer_copies_are_independent():
    tiny_tokenizer().padding_side = "left"
    assert tiny_tokenizer().padding_side == "right"
