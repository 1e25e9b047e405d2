"""What one forward can be asked for: the capture (capture.py), attention statistics as the layers
run (attention.py) and exact attention rows (attention_rows.py), vocabulary statistics from hidden
states (vocab_stats.py), and memory estimates made before anything is allocated (memory.py)."""
