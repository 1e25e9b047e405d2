"""Smoke test of an installed Token Workbench, run from the repository root (scripts/drift_check.sh):
the wheel holds every subpackage, `python -m workbench analyze` runs once per signal on the embedded
models, and `python -m workbench serve` answers. FutureWarnings and DeprecationWarnings are listed.
Exit status 1 on the first break, with its output."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = "The capital of France is Paris."
MOE_SIGNALS = {"routing"}  # the embedded SmolLM2 is dense: these run on workbench:tiny-moe
WARNING = re.compile(r"\b(FutureWarning|PendingDeprecationWarning|DeprecationWarning): (.*)")


def run(args: list[str], cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "always", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def check(what: str, result: subprocess.CompletedProcess, warnings: set[str]) -> None:
    warnings.update(" ".join(m) for m in WARNING.findall(result.stderr))
    if result.returncode != 0:
        print(f"FAILED: {what} (exit {result.returncode})\n{result.stderr[-3000:]}")
        sys.exit(1)
    print(f"ok: {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_answers(warnings: set[str]) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-W", "always", "-m", "workbench", "serve", "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            if server.poll() is not None:
                print(f"FAILED: workbench serve exited ({server.returncode})\n{server.stdout.read()[-3000:]}")
                sys.exit(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    if response.status == 200 and b"bokeh" in response.read().lower():
                        print("ok: python -m workbench serve answers from the repository root")
                        return
            except OSError:
                time.sleep(1)
        print("FAILED: workbench serve did not answer within 180 s")
        sys.exit(1)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
        warnings.update(" ".join(m) for m in WARNING.findall(output or ""))


def main() -> None:
    warnings: set[str] = set()
    with tempfile.TemporaryDirectory() as outside:  # the installed wheel, not the source folder
        check("the wheel holds workbench.kernels, workbench.widgets and their data",
              run(["-c", "import workbench.kernels.dispatch, workbench.widgets.dashboard, workbench.model.families, workbench.credit, "
                         "pathlib, workbench.widgets as w; assert list(pathlib.Path(w.__file__).parent.glob('static/*.js'))"],
                  cwd=Path(outside)), warnings)
    check("import transformers and workbench from the repository root",
          run(["-c", "import transformers, workbench, kernels; assert 'site-packages' in kernels.__file__, kernels.__file__"]),
          warnings)
    signals = run(["-c", "from workbench.signals import SIGNALS; print(' '.join(SIGNALS))"])
    check("list the signals", signals, warnings)
    for signal in signals.stdout.split():
        model = "workbench:tiny-moe" if signal in MOE_SIGNALS else "workbench:smollm2-135m"
        result = run(["-m", "workbench", "analyze", TEXT, "--model", model, "--signals", signal, "--format", "json"])
        check(f"python -m workbench analyze --signals {signal} --model {model}", result, warnings)
        json.loads(result.stdout)
    serve_answers(warnings)
    for warning in sorted(warnings):
        print(f"warning seen: {warning[:300]}")


if __name__ == "__main__":
    main()
