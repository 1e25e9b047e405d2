"""The `workbench` command (main.py) and its terminal table (terminal.py)."""
