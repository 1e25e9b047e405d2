"""`serve` on tiny:llama, slowed down while it reads a long input: each call of one of the
model's modules first sleeps `SLOW_S` when the input has more than `LONG` tokens, so that an
analysis of a long text runs for a minute (30 module calls) while one of a short text takes
well under a second. Started by tests/test_serve_cancel.py as `python tests/slow_server.py PORT`."""
import sys
import time

import workbench as wb
from workbench.widgets import serve

LONG, SLOW_S = 64, 2.0


def main(port: int) -> None:
    model = wb.load("tiny:llama")
    reading_long_input = [False]

    def note_length(_module, inputs):  # the embedding's input: the token ids [B, T]
        reading_long_input[0] = inputs[0].shape[-1] > LONG

    def slow(_module, _inputs):
        if reading_long_input[0]:
            time.sleep(SLOW_S)

    model.hf.get_input_embeddings().register_forward_pre_hook(note_length)
    for module in model.hf.modules():
        module.register_forward_pre_hook(slow)
    serve(model, port=port)


if __name__ == "__main__":
    main(int(sys.argv[1]))
