"""Results: a `Run` (one text, per-token signals; run.py) and a `Group` (G responses to one prompt,
rewards, advantages; group.py), with their save, load and show."""
