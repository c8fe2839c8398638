"""Reliability: the bad-input suite and the fault table (issue 14).

Bad inputs: every case of ``tests/reliability/cases.py`` is run once and classified as a clear
error (ValueError/TypeError naming the argument), flagged (a documented flag reports it),
correct, silently wrong, unclear (a ValueError/TypeError that does not name the argument), a
crash (any other exception) or a hang (no answer within 20 s); one row per area and a total.

Faults: each test of ``tests/reliability/test_faults.py`` injects one fault (a second writer,
a stale lock, truncated files, forged checkpoints, disk full / read-only, NaN gradients, a
killed torchrun agent) and checks that nothing is lost; plus ``--kills`` random SIGKILLs of an
``eb.fit`` process, each resumed, whose final checkpoint must equal an uninterrupted run's
byte for byte (states lost = runs whose tensors differ, rows lost = metrics.csv rows missing).

Run: ``python benchmarks/bench_reliability.py [--kills N]``.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "reliability"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import CASES, OUTCOMES, run_case  # noqa: E402

from common import write  # noqa: E402

TRAIN = """
import sys, torch, ebmlab as eb
torch.set_num_threads(1)
torch.manual_seed(0)
model = eb.energies.MLPEnergy(2, hidden=(16,))
data = torch.randn(256, 2, generator=torch.Generator().manual_seed(1))
eb.fit(model, data, "energy_loss", num_steps=400, batch_size=32, checkpoint_every=5,
       log_every=5, progress=False, checkpoint_dir=sys.argv[1])
"""


def bad_inputs() -> list[dict[str, object]]:
    per_area: dict[str, Counter[str]] = {}
    for case in CASES:
        outcome, detail = run_case(case)
        per_area.setdefault(case.area, Counter())[outcome] += 1
        if outcome not in ("clear", "flagged", "correct"):
            print(f"  [{outcome}] {case.name}: {detail[:150]}")
    rows = []
    total: Counter[str] = Counter()
    for area, counts in sorted(per_area.items()):
        total.update(counts)
        rows.append({"area": area, "cases": sum(counts.values()),
                     **{k: counts.get(k, 0) for k in OUTCOMES}})
    rows.append({"area": "**all**", "cases": sum(total.values()),
                 **{k: total.get(k, 0) for k in OUTCOMES}})
    return rows


def fault_tests() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "faults.xml"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             str(ROOT / "tests" / "reliability" / "test_faults.py"), f"--junitxml={report}"],
            cwd=ROOT, check=False, capture_output=True,
        )
        rows = []
        for case in ET.parse(report).getroot().iter("testcase"):
            failed = case.find("failure") is not None or case.find("error") is not None
            rows.append({"fault": case.get("name", "").removeprefix("test_").replace("_", " "),
                         "injected": 1, "survived": 0 if failed else 1,
                         "lost": "?" if failed else 0,
                         "seconds": float(case.get("time", "nan"))})
        return rows


def _final(folder: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    from ebmlab.training import read_checkpoint

    _, tensors, _ = read_checkpoint(folder)
    lines = (folder / "metrics.csv").read_text().splitlines()
    rows = [",".join(line.split(",")[:-1]) for line in lines]  # without the time column
    return tensors, rows


def kills(num: int, seed: int = 0) -> dict[str, object]:
    """SIGKILL an eb.fit process at random times, resume each, compare with a clean run."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref"
        subprocess.run([sys.executable, "-c", TRAIN, str(ref)], check=True)
        ref_tensors, ref_rows = _final(ref)
        lost_states = lost_rows = 0
        for i in range(num):
            run = Path(tmp) / f"run{i}"
            proc = subprocess.Popen([sys.executable, "-c", TRAIN, str(run)])
            time.sleep(rng.uniform(3.0, 6.0))
            proc.kill()
            proc.wait()
            subprocess.run([sys.executable, "-c", TRAIN, str(run)], check=True)
            tensors, rows = _final(run)
            same = tensors.keys() == ref_tensors.keys() and all(
                torch.equal(tensors[k], ref_tensors[k]) for k in tensors)
            lost_states += not same
            lost_rows += len(set(ref_rows) - set(rows))
        return {"fault": f"SIGKILL of eb.fit at a random time, resumed ({num} runs)",
                "injected": num, "survived": num - lost_states,
                "lost": f"{lost_states} states, {lost_rows} rows", "seconds": float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    write("reliability_inputs", bad_inputs(), ["area", "cases", *OUTCOMES],
          notes="Bad-input suite (tests/reliability/cases.py), one run per case.")
    rows = fault_tests()
    if args.kills:
        rows.append(kills(args.kills))
    write("reliability_faults", rows, ["fault", "injected", "survived", "lost", "seconds"],
          notes="Fault table: tests/reliability/test_faults.py plus random SIGKILLs.")


if __name__ == "__main__":
    main()
