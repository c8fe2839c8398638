"""Peak memory of the merge at 65,536 starts (fresh process, resident set): linear, not S x S."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import resource, torch, ebmlab as eb
torch.set_num_threads(1)
r = eb.infer(eb.energies.DoubleWell(7), num_starts={s}, domain=eb.Box([-2.0] * 7, [2.0] * 7),
             generator=torch.Generator().manual_seed(0))
print(r.count.item(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _peak_mb(s: int) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", CHILD.format(s=s)], check=True,
                         capture_output=True, text=True, timeout=900)
    count, mb = out.stdout.split()[-2:]
    return int(count), float(mb)


@pytest.mark.slow
def test_merge_peak_memory_in_a_fresh_process():
    # DoubleWell(7) has 128 minima. The old merge allocated an S x S bool matrix: 4.3 GB at
    # S = 65,536 (8.5 GB peak). Linear memory: quadrupling S from 16,384 adds at most a few
    # hundred MB (~ 4 x the per-start state), far below the 3.2 GB an S^2 term would add.
    c_small, small = _peak_mb(16_384)
    c_big, big = _peak_mb(65_536)
    assert c_small == c_big == 128
    assert big - small < 600, (small, big)
