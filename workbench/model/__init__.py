"""The model: the `Model` handle and `load` (handle.py), the embedded models (embedded.py), the tiny
test models built in memory (tiny.py, behind `load("tiny:...")`) and one adapter file per family
(families/)."""
