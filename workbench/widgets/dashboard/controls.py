"""What the dashboard's fields mean: chat messages from the text box, numbers checked against
their allowed values, and the sampler controls shared by the sampling modes (generate,
rollouts) with their reading as `generate`/`rollouts` keyword arguments. The sampler's
allowed values are the CLI's (`workbench.sampler_parameters.BY_NAME`): a value the dashboard
refuses, the CLI refuses too (tests/test_serve.py compares them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from workbench.errors import WorkbenchError
from workbench.sampler_parameters import BY_NAME, Range

from .components import number_field_class

ROLES = ("system", "user", "assistant")
ADAPTIVE = "adaptive"  # the sampler picker's HAPO adaptive temperature (not a named sampler of BY_NAME)
TAU = Range(0, 0.95)  # HAPO's tau: the temperature moves by at most this fraction (T (1 + tau h), |h| <= 1)
# The sampler picker's words where the name alone would not say what a sampler is.
SAMPLER_CHOICES = {"gumbel": "gumbel (= temperature: every sampler draws by Gumbel-max)",
                   ADAPTIVE: "adaptive temperature (HAPO)"}
# Allowed values of the fields that are no sampler's parameter (`field_value` checks them: the
# fields have no bounds of their own, which Bokeh would clamp a typed value to, silently).
NEW_TOKENS = Range(1, 1024, whole=True)
SEED = Range(0, 10**9, whole=True)  # (the generator takes less than 2**64)
GAMMA = Range(1, 64, whole=True)  # drafted tokens per speculative step (generate's draft, compare's acceptance view)


def parse_messages(text: str) -> list[dict]:
    """Chat messages from plain text: each message starts with a line `user:`,
    `assistant:` or `system:` (the rest of that line and the lines below, up to the
    next such line, are its content)."""
    messages: list[dict] = []
    for line in text.splitlines():
        head, sep, rest = line.partition(":")
        if sep and head.strip().lower() in ROLES:
            messages.append({"role": head.strip().lower(), "content": rest.strip()})
        elif messages:
            messages[-1]["content"] += "\n" + line
        elif line.strip():
            named = f"'{head.strip()}' is not a role; " if sep and head.strip() and " " not in head.strip() else ""
            raise WorkbenchError(f"{named}start each chat message with a line 'user: ...', 'assistant: ...' or "
                                 "'system: ...'")
    if not messages:
        raise WorkbenchError("no chat messages: write lines such as 'user: What is the capital of Italy?'")
    for number, message in enumerate(messages, 1):
        message["content"] = message["content"].strip()
        if not message["content"]:
            raise WorkbenchError(f"chat message {number} ({message['role']}) is empty: write its text after "
                                 f"'{message['role']}:'")
    return messages


def field_value(widget, allowed: Range, label: str | None = None):
    """The number a field holds (typed: its text), when it is `allowed` (an int when
    `allowed.whole`). Otherwise a WorkbenchError naming the field (`label`, default its
    name), the allowed values and what it holds (a text that is no number, by its text)."""
    value, shown = _typed_number(widget.value)
    if value is None or value not in allowed:
        raise WorkbenchError(f"{label or widget.label} must be {allowed.words()}; got {shown}")
    return int(value) if allowed.whole else value


def _typed_number(value) -> tuple[float | int | None, str]:
    """(the number, as the error shows it) of a field's value: a number set from Python, or
    the text typed in the browser (a whole number read exactly, however large). None for
    nothing, a text that is no number, or a number that is not finite."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "nothing"
    if not isinstance(value, str):
        return (value if math.isfinite(value) else None), f"{value:g}"
    text = value.strip()
    for parse in (int, float):
        try:
            number = parse(text)
        except ValueError:
            continue
        return (number if math.isfinite(number) else None), text
    return None, f"{text!r}, which is not a number"


@dataclass(frozen=True)
class AdaptiveChoice:
    """HAPO's adaptive temperature as chosen in the dashboard: tau and the base temperature.
    Its reference entropies are the prompt's own tokens' (HAPO needs a reference batch; the
    dashboard has no other), read by the model when the work holds it."""

    tau: float
    temperature: float

    def sampler(self, model, inputs: dict):
        """The Sampler, from the entropies `model` gives the prompt (`inputs`: `prompt` or
        `messages`, as for generate)."""
        from workbench import samplers

        text = {"text": inputs["prompt"]} if "prompt" in inputs else {"messages": inputs["messages"]}
        reference = model.analyze(signals=["uncertainty"], **text)
        try:
            return samplers.Adaptive(reference, self.tau, self.temperature)
        except WorkbenchError as error:
            raise WorkbenchError(f"{error}: the dashboard takes them from the prompt, write a longer one") from None


def resolved(options: dict, model, inputs: dict) -> dict:
    """`options` (of generate or rollouts) with an `AdaptiveChoice` made a Sampler. Call
    holding the model."""
    chosen = options["sampler"]
    return options | {"sampler": chosen.sampler(model, inputs)} if isinstance(chosen, AdaptiveChoice) else options


class SamplerControls:
    """Sampler, its own parameter (top-p's p, ...), temperature, length and seed: one row,
    shown in the sampling modes, each of which keeps its own settings (`keep`, `recall`).
    The Temperature field is the one temperature control: the parameter of the temperature
    and Gumbel samplers, applied before the truncation of the others; hidden for greedy,
    which takes the most likely token at any temperature. Iterating gives the row's widgets."""

    def __init__(self):
        import panel as pn

        self.sampler = pn.widgets.Select(label="Sampler", options={SAMPLER_CHOICES.get(name, name): name
                                                                  for name in [*BY_NAME, ADAPTIVE]}, width=200)
        number = number_field_class()
        self.sampler_value = number(width=90)
        self.temperature = number(label="Temperature", value=1.0, width=100)
        self.max_new_tokens = number(label="New tokens", value=48, width=100)
        self.seed = number(label="Seed", value=0, width=90)
        self._show(self.sampler.value)
        self.sampler.param.watch(lambda event: self._show(event.new), "value")
        self.row = pn.Row(self.sampler, self.sampler_value, self.temperature, self.max_new_tokens, self.seed,
                          visible=False)
        self.kept: dict[str, tuple] = {}  # mode -> sampler, its parameter's value (None: its default),
        # temperature, new tokens

    def __iter__(self):
        return iter(self.row)

    def _show(self, name: str) -> None:
        """The fields of sampler `name`, its own parameter at its default."""
        if name == ADAPTIVE:
            self.temperature.visible = self.sampler_value.visible = True
            self.sampler_value.param.update(label="tau", value=0.5)
            return
        parameter = BY_NAME[name]
        self.temperature.visible = parameter is not None
        self.sampler_value.visible = parameter is not None and parameter.rule != "temperature"
        if self.sampler_value.visible:
            self.sampler_value.param.update(label=parameter.name, value=parameter.default)

    def start(self, mode: str, sampler: str, temperature: float, new_tokens: int) -> None:
        """The settings sampling mode `mode` starts with."""
        self.kept[mode] = (sampler, None, temperature, new_tokens)

    def keep(self, mode: str) -> None:
        """Remember the fields as sampling mode `mode`'s settings."""
        self.kept[mode] = (self.sampler.value, self.sampler_value.value, self.temperature.value,
                           self.max_new_tokens.value)

    def recall(self, mode: str) -> None:
        """Set the fields to sampling mode `mode`'s last settings."""
        name, value, temperature, new_tokens = self.kept[mode]
        self.sampler.value = name  # first: choosing a sampler resets its value
        if value is not None:
            self.sampler_value.value = value
        self.temperature.value, self.max_new_tokens.value = temperature, new_tokens

    def options(self) -> dict:
        """The fields as keyword arguments of `generate` and `rollouts`. The Temperature field
        is the temperature and Gumbel samplers' own parameter, and comes before the truncation
        of the others (greedy has none), or is HAPO's base temperature. A field outside its
        allowed values (`BY_NAME`, `TAU`) is refused. HAPO's sampler is an `AdaptiveChoice`
        until the model reads its reference (`resolved`)."""
        from workbench import samplers

        name = self.sampler.value
        parameter = BY_NAME.get(name)
        if name == ADAPTIVE:
            sampler = AdaptiveChoice(field_value(self.sampler_value, TAU, "HAPO's tau"),
                                     field_value(self.temperature, BY_NAME["temperature"].allowed))
        elif parameter is None:
            sampler = samplers.Greedy()
        else:
            rules = {"temperature": field_value(self.temperature, BY_NAME["temperature"].allowed)}
            if parameter.rule != "temperature":
                rules[parameter.rule] = field_value(self.sampler_value, parameter.allowed, f"{name}'s {parameter.name}")
            sampler = samplers.Sampler(**rules)
        return {"sampler": sampler, "seed": self.seed_value(), "progress": False,
                "max_new_tokens": field_value(self.max_new_tokens, NEW_TOKENS)}

    def seed_value(self) -> int:
        return field_value(self.seed, SEED)

    def said(self, meta: dict) -> str:
        """The sampler a run's `meta` names, as the status line says it: a choice that `meta`
        names otherwise (gumbel: the temperature sampler's distribution) says both."""
        chosen = self.sampler.value
        return meta["sampler"] if meta["sampler"].startswith(chosen) else f"{chosen}, that is {meta['sampler']}"
