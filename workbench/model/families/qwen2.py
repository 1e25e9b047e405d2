"""Qwen2 / Qwen3: Llama layout; ChatML template when a checkpoint ships none."""
from .base import FamilyAdapter

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class Qwen2(FamilyAdapter):
    name = "qwen2"
    model_types = ("qwen2", "qwen3")
    default_chat_template = CHATML
