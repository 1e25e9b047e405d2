"""The served dashboard (`workbench serve`): type a text or chat messages, analyze it (or,
in generate mode, continue it with a chosen sampler), and look at the result in linked
views: the token strip (paged by 400 tokens), the per-token chart of a signal, the
next-token distribution and every registered panel that has data in the run (logit lens,
routing, ...), one section per panel group. Clicking a token in the strip or a point in a
chart selects that token in every view; only what changed is sent to the browser (a
moved marker is a relayout): on a 2,000-token run a click reaches every view in about
150 ms (measured by tests/test_serve.py). Exports: the table as Parquet or CSV, each
figure as standalone HTML (and PNG when kaleido is installed; each chart's camera button
makes a PNG in the browser).

Rollouts mode: n sampled responses to a question, scored by a named reward against the
expected answer (`exact_answer`, or `numeric_answer` within a tolerance), with GRPO
advantages, Token Hidden Reward and D3S per token, and the critical token of the first
wrong response (rollout definition, within a budget of prefixes; any other wrong response's
on demand). One response is on show, as a run like the others: its token strip (colored on
the group's common scale) and its per-position charts, which follow the group views
(widgets/credit.py: THR and D3S per token across the responses, success rate along a
response, prefix tree). A token selected anywhere, (response, position), is selected in all of
them; clicking another response's token in a group view shows that response. A click reaches
the strip and the five views of a 4-response group in about 200 ms on a busy 2-core machine
(measured by tests/test_serve_rollouts.py).

Compare mode: the same tokens under two predictors (`model.compare`), the model against the
reference model the server was started with (`serve(model, reference=...)`, `workbench serve
--reference MODEL`) or under two contexts; its views are the compare panels (widgets/compare.py).
With a draft model served (`serve(model, draft=...)`, `workbench serve --draft MODEL`), generate
mode's Draft box turns on speculative sampling; its trace view (widgets/speculative.py) follows
the selected token like every view.

Corpus mode: a folder written by `workbench corpus` (`serve(model, corpus=DIR)`, `workbench serve
--corpus DIR`, which opens it as each page loads): its overview (widgets/corpus.py), and a
clicked document's tokens as a run read from the corpus's rows, with the usual views.

Safety: each browser session gets its own `Dashboard` (its runs, selection and settings);
the one model is shared read-only and called only under a lock, from a worker thread,
while the page shows progress and which page's work it waits for. A session's work stops
at the model's next module call when its Cancel button is pressed or its page goes away
(a page closed or reloaded: its session ends `UNUSED_SESSION_MS` later), so that it does
not hold up the others. Nothing the user types is executed: text and chat messages
are data. The model is chosen when the server starts (weights load only as safetensors or
GGUF, see `workbench.load`). Bokeh, Panel and plotly.js are served by this server, never
from a CDN; exported figures inline plotly.js: everything works with no network.

Modules: `layout` (the page: widgets, selection, redraws), `modes` (one module per mode in
one registry: how to add a mode is in its docstring), `controls` (chat messages, checked
number fields, the sampler row shared by the sampling modes), `worker` (the worker thread,
the lock and cancelling), `exports` (table and figure downloads), `components` (Panel
components), `server` (`serve`, one page per session).
"""
from .controls import SAMPLER_CHOICES, parse_messages
from .layout import Dashboard
from .modes import DEFAULT_TEXT
from .server import make_app, serve

__all__ = ["DEFAULT_TEXT", "SAMPLER_CHOICES", "Dashboard", "make_app", "parse_messages", "serve"]
