"""The decoders stage 1 runs on untrusted bytes, fuzzed with atheris for a fixed number of inputs.

Longer runs: ``python -m tests.chaos.fuzz_decoder -runs=1000000`` (or ``-max_total_time=3600``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

REPO = Path(__file__).resolve().parents[2]
RUNS = 50_000


@pytest.mark.chaos
def test_the_decoders_survive_fuzzed_input(tmp_path):
    # A process of its own: libFuzzer ends the process when it is done, and a crash in a kernel is a
    # signal, not an exception.
    done = subprocess.run([sys.executable, "-m", "tests.chaos.fuzz_decoder", f"-runs={RUNS}", "-seed=20261121",
                           "-rss_limit_mb=4096", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert re.search(rf"Done {RUNS} runs", out), out[-2000:]
    assert list(tmp_path.iterdir()), "the fuzzer kept no corpus: it did not run the targets"
