"""Llama and its close relatives (Mistral, SmolLM2): the base layout, unchanged."""
from .base import FamilyAdapter


class Llama(FamilyAdapter):
    name = "llama"
    model_types = ("llama", "mistral")
