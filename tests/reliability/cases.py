"""The bad-input cases of the reliability suite, shared by the tests and the benchmark.

Each :class:`Case` calls one public entry point with one bad input and says what a reliable
library does with it: raise a ``ValueError``/``TypeError`` whose message names the argument
(``error``), return a result whose documented flag reports the problem (``flag``), or return
the correct result (``ok``). :func:`run_case` classifies what actually happened as one of
``clear``, ``flagged``, ``correct``, ``silent`` (wrong result, no error), ``unclear`` (a
ValueError/TypeError that does not name the argument), ``crash`` (any other exception) or
``hang`` (past the time limit).
"""

from __future__ import annotations

import math
import re
import signal
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import ebmlab as eb

__all__ = ["Case", "CASES", "run_case", "OUTCOMES"]

OUTCOMES = ("clear", "flagged", "correct", "silent", "unclear", "crash", "hang")


@dataclass(frozen=True)
class Case:
    """One bad input: ``fn()`` and what should come of it."""

    name: str
    fn: Callable[[], Any]
    expect: str  # "error", "flag" or "ok"
    match: str = ""  # error: a regex the message must match (the argument's name)
    check: Callable[[Any], bool] | None = None  # flag / ok: the result is flagged / right
    area: str = ""  # whose code it exercises
    errors: tuple[type[BaseException], ...] = (ValueError, TypeError)  # the documented ones


class _Timeout(Exception):
    pass


def run_case(case: Case, timeout_s: float = 20.0) -> tuple[str, str]:
    """Run one case; return ``(outcome, detail)``."""

    def alarm(signum: int, frame: object) -> None:
        raise _Timeout

    has_alarm = hasattr(signal, "SIGALRM")
    old = signal.signal(signal.SIGALRM, alarm) if has_alarm else None
    if has_alarm:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # the library's default: the cases assume it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = case.fn()
    except _Timeout:
        return "hang", f"no answer within {timeout_s} s"
    except Exception as err:  # noqa: BLE001 - classifying is the point
        if not isinstance(err, case.errors):
            return "crash", f"{type(err).__name__}: {str(err)[:200]}"
        text = f"{type(err).__name__}: {err}"
        if case.expect == "error":
            if case.match and not re.search(case.match, str(err), re.IGNORECASE):
                return "unclear", text
            return "clear", text
        return "silent" if case.expect == "ok" else "unclear", text
    finally:
        torch.set_default_dtype(old_dtype)
        if has_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    if case.expect == "error":
        return "silent", f"no error; returned {type(result).__name__}"
    ok = case.check is None or bool(case.check(result))
    if case.expect == "flag":
        return ("flagged", "flagged") if ok else ("silent", "not flagged")
    return ("correct", "correct") if ok else ("silent", "wrong result")


# -- fixtures ------------------------------------------------------------------------------------

BOX = eb.Box([-2.0, -2.0], [2.0, 2.0])


def _shift() -> eb.FunctionEnergy:
    return eb.FunctionEnergy(lambda y, x: ((y - x) ** 2).sum(-1), y_shape=(2,))


def _q() -> eb.energies.Quadratic:
    return eb.energies.Quadratic(torch.eye(2))


def _fn(f: Callable[..., Any]) -> eb.FunctionEnergy:
    return eb.FunctionEnergy(f, y_shape=(2,))


class _Column(torch.nn.Module):
    """A trainable energy of the wrong output shape (B, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return (self.w * y**2).sum(-1, keepdim=True)


def _g() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _infer(**kw: Any) -> Any:
    args: dict[str, Any] = {"num_starts": 4, "domain": BOX, "generator": _g(), "max_steps": 50}
    args.update(kw)
    energy = args.pop("energy", _q())
    return eb.infer(energy, **args)


def _sample(sampler: Any = None, energy: Any = None, y0: Any = None, steps: int = 5,
            **kw: Any) -> Any:
    return eb.sample(energy if energy is not None else _q(),
                     torch.zeros(4, 2) if y0 is None else y0,
                     sampler if sampler is not None else eb.samplers.MALA(0.1), steps,
                     generator=_g(), **kw)


def _fit(**kw: Any) -> Any:
    args: dict[str, Any] = {"num_steps": 2, "progress": False, "batch_size": 16}
    args.update(kw)
    energy = args.pop("energy", eb.energies.MLPEnergy(2, hidden=(4,)))
    data = args.pop("data", torch.randn(32, 2))
    loss = args.pop("loss", "energy_loss")
    return eb.fit(energy, data, loss, **args)


def _free(beta: float = 1.0, energy: Any = None, **kw: Any) -> Any:
    grid = eb.latent.Grid(0.0, 2 * math.pi, 16, periodic=True)
    return eb.FreeEnergy(energy if energy is not None else eb.energies.Ellipse(), grid,
                         beta=beta, **kw)


def _chain_flag(result: Any) -> bool:
    """A chain whose steps diverged says so (Chain.num_divergent > 0)."""
    return bool(torch.as_tensor(result.num_divergent).sum() > 0)


def _forged_checkpoint() -> Any:
    folder = tempfile.mkdtemp()
    model = eb.energies.MLPEnergy(2, hidden=(4,))
    eb.fit(model, torch.randn(32, 2), "energy_loss", num_steps=1, progress=False,
           checkpoint_dir=folder)
    import hashlib
    import json
    from pathlib import Path

    from ebmlab.training import checkpoint as ck

    path = ck.latest_checkpoint(folder)
    record = json.loads(Path(path).read_text())
    blob = b"\xff" * 8 + b"{not json"  # a lying safetensors header, re-signed
    Path(folder, record["tensor_file"]).write_bytes(blob)
    record["tensor_sha256"] = hashlib.sha256(blob).hexdigest()
    record["tensor_bytes"] = len(blob)
    record.pop("digest")
    record["digest"] = ck._digest(record)
    Path(path).write_text(json.dumps(record))
    return ck.read_checkpoint(folder)


def _fit_file_as_folder() -> Any:
    path = tempfile.mktemp()
    with open(path, "w") as f:
        f.write("not a folder")
    return _fit(checkpoint_dir=path)


def _fit_other_optimizer() -> Any:
    folder = tempfile.mkdtemp()
    model = eb.energies.MLPEnergy(2, hidden=(4,))
    data = torch.randn(32, 2)
    eb.fit(model, data, "energy_loss", num_steps=1, progress=False, checkpoint_dir=folder)
    return eb.fit(model, data, "energy_loss", num_steps=2, progress=False,
                  checkpoint_dir=folder, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def _close(value: float, target: float, rtol: float = 1e-3) -> Callable[[Any], bool]:
    return lambda r: abs(float(r.detach()) - target) <= rtol * max(1.0, abs(target))


# -- the cases -----------------------------------------------------------------------------------

z02 = torch.zeros(0, 2)
CASES: list[Case] = [
    # infer
    Case("infer: empty batch x (0, 2)", lambda: _infer(energy=_shift(), x=z02), "error",
         r"\bx\b|empty|batch", area="inference"),
    Case("infer: num_starts=0", lambda: _infer(num_starts=0), "error", "num_starts",
         area="inference"),
    Case("infer: num_starts=-3", lambda: _infer(num_starts=-3), "error", "num_starts",
         area="inference"),
    Case("infer: num_starts=4.0", lambda: _infer(num_starts=4.0), "error", "num_starts",
         area="inference"),
    Case("infer: max_steps=-1", lambda: _infer(max_steps=-1), "error", "max_steps",
         area="inference"),
    Case("infer: gtol=-1", lambda: _infer(gtol=-1.0), "error", "gtol", area="inference"),
    Case("infer: gtol=nan", lambda: _infer(gtol=math.nan), "error", "gtol", area="inference"),
    Case("infer: x half", lambda: _infer(energy=_shift(), x=torch.zeros(2, 2).half()),
         "error", r"\bx\b|dtype|half|float16", area="inference"),
    Case("infer: x int", lambda: _infer(energy=_shift(), x=torch.zeros(2, 2, dtype=torch.int64)),
         "error", r"\bx\b", area="inference"),
    Case("infer: x complex",
         lambda: _infer(energy=_shift(), x=torch.zeros(2, 2, dtype=torch.complex64)),
         "error", r"\bx\b", area="inference"),
    Case("infer: x on meta", lambda: _infer(energy=_shift(), x=torch.zeros(2, 2, device="meta")),
         "error", r"\bx\b|meta|device", area="inference"),
    Case("infer: dtype=torch.int32", lambda: _infer(dtype=torch.int32), "error", "dtype",
         area="inference"),
    Case("infer: float64 x into a float32 MLP",
         lambda: _infer(energy=eb.energies.MLPEnergy(2, x_dim=2, hidden=(8,)),
                        x=torch.zeros(2, 2, dtype=torch.float64)),
         "error", r"dtype|float64", area="inference"),
    Case("infer: init with NaN", lambda: _infer(init=torch.full((4, 2), math.nan)), "error",
         "init", area="inference"),
    Case("infer: init wrong shape", lambda: _infer(init=torch.zeros(4, 3)), "error", "init",
         area="inference"),
    Case("infer: energy returns (B, 1)",
         lambda: _infer(energy=_fn(lambda y, x: (y**2).sum(-1, keepdim=True))), "error",
         r"shape|\(B,\)", area="inference"),
    Case("infer: energy returns a float", lambda: _infer(energy=_fn(lambda y, x: 1.0)),
         "error", r"tensor|float", area="inference"),
    Case("infer: energy returns NaN everywhere",
         lambda: _infer(energy=_fn(lambda y, x: y.sum(-1) * math.nan)), "error",
         r"diverged|non-finite", area="inference"),
    Case("infer: energy shape right on the first call only",
         lambda: _infer(energy=_fn(lambda y, x: (y**2).sum(-1) if y.shape[0] == 1
                                   else (y**2).sum(-1, keepdim=True))),
         "error", r"shape|\(B,\)", area="inference"),
    Case("infer: domain not a Box", lambda: _infer(domain=[-1.0, 1.0]), "error", "domain",
         area="inference"),
    Case("infer: generator not a Generator", lambda: _infer(generator=0), "error", "generator",
         area="inference"),
    # sample
    Case("sample: empty batch y0 (0, 2)", lambda: _sample(y0=z02).summary(), "error",
         r"y0|empty|chain", area="samplers"),
    Case("sample: num_steps=0", lambda: _sample(steps=0), "error", "num_steps",
         area="samplers"),
    Case("sample: num_steps=-1", lambda: _sample(steps=-1), "error", "num_steps",
         area="samplers"),
    Case("sample: y0 int", lambda: _sample(y0=torch.zeros(4, 2, dtype=torch.int64)), "error",
         "y0", area="samplers"),
    Case("sample: y0 complex", lambda: _sample(y0=torch.zeros(4, 2, dtype=torch.complex64)),
         "error", "y0", area="samplers"),
    Case("sample: y0 on meta", lambda: _sample(y0=torch.zeros(4, 2, device="meta")), "error",
         r"y0|meta|device", area="samplers"),
    Case("sample: y0 with NaN", lambda: _sample(y0=torch.full((4, 2), math.nan)), "error",
         "y0", area="samplers"),
    Case("sample: y0 wrong shape", lambda: _sample(y0=torch.zeros(4, 3)), "error",
         r"y0|shape", area="samplers"),
    Case("sample: energy returns a float",
         lambda: _sample(energy=_fn(lambda y, x: 1.0)), "error", r"tensor|float",
         area="samplers"),
    Case("sample: energy returns (B, 1)",
         lambda: _sample(eb.samplers.HMC(0.1, 3),
                         energy=_fn(lambda y, x: (y**2).sum(-1, keepdim=True))),
         "error", r"shape|\(B,\)", area="samplers"),
    Case("sample: burn_in=-1", lambda: _sample(burn_in=-1), "error", "burn_in",
         area="samplers"),
    Case("sample: thin=0", lambda: _sample(thin=0), "error", "thin", area="samplers"),
    Case("MALA: step_size=0", lambda: eb.samplers.MALA(0.0), "error", "step_size",
         area="samplers"),
    Case("MALA: step_size=nan", lambda: eb.samplers.MALA(math.nan), "error", "step_size",
         area="samplers"),
    Case("HMC: num_leapfrog=0", lambda: eb.samplers.HMC(0.1, 0), "error", "num_leapfrog",
         area="samplers"),
    Case("NUTS: max_tree_depth=0", lambda: eb.samplers.NUTS(0.1, max_tree_depth=0), "error",
         "max_tree_depth", area="samplers"),
    Case("Langevin: beta=-1", lambda: eb.samplers.Langevin(0.1, beta=-1.0), "error", "beta",
         area="samplers"),
    Case("MALA: target_acceptance=1.5",
         lambda: eb.samplers.MALA(0.1, target_acceptance=1.5), "error", "target_acceptance",
         area="samplers"),
    Case("Langevin: h = 2.5 on N(0, I) blows up",
         lambda: _sample(eb.samplers.Langevin(2.5), steps=60, y0=torch.ones(8, 2)), "flag",
         check=_chain_flag, area="samplers"),
    # Gibbs and partition
    Case("Gibbs: empty batch x", lambda: eb.Gibbs(_shift(), z02, domain=BOX).log_partition(),
         "error", r"\bx\b|empty|batch", area="gibbs"),
    Case("Gibbs: beta=0", lambda: eb.Gibbs(_q(), domain=BOX, beta=0.0), "error", "beta",
         area="gibbs"),
    Case("Gibbs: no domain", lambda: eb.Gibbs(_q(), domain=None), "error", "domain",
         area="gibbs"),
    Case("Gibbs.sample((-1,))",
         lambda: eb.Gibbs(eb.energies.DoubleWell(1), domain=eb.Box(-2.0, 2.0)).sample((-1,)),
         "error", r"sample_shape|shape|-1", area="gibbs"),
    Case("partition.Grid: num=0", lambda: eb.partition.Grid(num=0), "error", "num",
         area="partition"),
    Case("partition.Grid: 2**48 cells (used to hang)",
         lambda: eb.partition.Grid(num=[2**16] * 3).log_partition(
             eb.energies.DoubleWell(3), domain=eb.Box([-2.0] * 3, [2.0] * 3)),
         "error", "num", area="partition"),
    Case("partition.Grid: chunk_size=0", lambda: eb.partition.Grid(chunk_size=0), "error",
         "chunk_size", area="partition"),
    Case("partition.Importance: num_samples=0", lambda: eb.partition.Importance(0), "error",
         "num_samples", area="partition"),
    # domain
    Case("Box([], [])", lambda: eb.Box([], []), "error", r"coordinate|empty|low", area="domain"),
    Case("Box: low > high", lambda: eb.Box([1.0], [0.0]), "error", "high", area="domain"),
    Case("Box: NaN corner", lambda: eb.Box([math.nan], [1.0]), "error", "finite",
         area="domain"),
    Case("Box: complex corners",
         lambda: eb.Box(torch.zeros(2, dtype=torch.complex64), torch.ones(2)), "error",
         "low", area="domain"),
    Case("Box: float64 corners keep float64",
         lambda: eb.Box(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)),
         "ok", check=lambda b: b.low.dtype == torch.float64, area="domain"),
    Case("Box.sample(-1)", lambda: BOX.sample(-1), "error", "sample_shape", area="domain"),
    Case("Box.grid(0)", lambda: BOX.grid(0), "error", "num", area="domain"),
    Case("Box.grid(2**16) in 2-D (4e9 points)", lambda: BOX.grid(2**16), "error", "num",
         area="domain"),
    Case("Box.grid(4.5)", lambda: BOX.grid(4.5), "error", "num", area="domain"),
    # energies
    Case("Quadratic: float64 precision stays float64",
         lambda: eb.energies.Quadratic(torch.eye(2, dtype=torch.float64)), "ok",
         check=lambda q: q.precision.dtype == torch.float64, area="energies"),
    Case("Quadratic: not square", lambda: eb.energies.Quadratic(torch.ones(2, 3)), "error",
         "precision", area="energies"),
    Case("Quadratic: NaN precision",
         lambda: eb.energies.Quadratic(torch.full((2, 2), math.nan)), "error", "precision",
         area="energies"),
    Case("Quadratic: complex precision",
         lambda: eb.energies.Quadratic(torch.eye(2, dtype=torch.complex64)), "error",
         "precision", area="energies"),
    Case("Quadratic: mean of another dtype",
         lambda: eb.energies.Quadratic(torch.eye(2), mean=torch.zeros(2, dtype=torch.float64)),
         "error", "mean", area="energies"),
    Case("Quadratic: y of wrong width", lambda: _q()(torch.zeros(3, 3)), "error", r"\by\b",
         area="energies"),
    Case("GaussianMixture.ring(num=0)", lambda: eb.energies.GaussianMixture.ring(0), "error",
         "num", area="energies"),
    # latent and free energy
    Case("latent.Grid(0, 1, 4.5)", lambda: eb.latent.Grid(0.0, 1.0, 4.5), "error", "num",
         area="latent"),
    Case("latent.Grid(0, 1, 1)", lambda: eb.latent.Grid(0.0, 1.0, 1), "error", "num",
         area="latent"),
    Case("latent.Grid: 2**33 points", lambda: eb.latent.Grid([0.0] * 3, [1.0] * 3, 2**11),
         "error", "num", area="latent"),
    Case("latent.Grid: high <= low", lambda: eb.latent.Grid(1.0, 0.0, 4), "error", "high",
         area="latent"),
    Case("FreeEnergy: beta=0", lambda: _free(0.0), "error", "beta", area="latent"),
    Case("FreeEnergy: beta=nan", lambda: _free(math.nan), "error", "beta", area="latent"),
    Case("FreeEnergy: reduction='max'", lambda: _free(reduction="max"), "error", "reduction",
         area="latent"),
    Case("FreeEnergy: beta=1e-9 float32 gives the mean energy",
         lambda: _free(1e-9)(torch.zeros(1, 2)), "ok", check=_close(0, 3.125, 1e-4),
         area="latent"),
    Case("FreeEnergy: beta=1e-30 float32 gives the mean energy",
         lambda: _free(1e-30)(torch.zeros(1, 2)), "ok", check=_close(0, 3.125, 1e-4),
         area="latent"),
    Case("FreeEnergy: y of wrong width", lambda: _free()(torch.zeros(2, 3)), "error",
         r"\by\b|shape", area="latent"),
    Case("FreeEnergy: y int", lambda: _free()(torch.zeros(2, 2, dtype=torch.int64)), "error",
         r"\by\b|dtype", area="latent"),
    # losses
    Case("loss over an empty batch",
         lambda: eb.losses.hinge(torch.zeros(0), torch.zeros(0), margin=1.0), "error",
         "empty", area="losses"),
    Case("lvq2(delta) with negative e_neg",
         lambda: eb.losses.lvq2(torch.tensor([0.0]), torch.tensor([-1.0]), delta=0.5), "error",
         "e_neg", area="losses"),
    Case("loss: dtypes differ",
         lambda: eb.losses.hinge(torch.zeros(2), torch.zeros(2, dtype=torch.float64)),
         "error", r"e_neg|dtype", area="losses"),
    Case("loss: shapes differ", lambda: eb.losses.hinge(torch.zeros(2), torch.zeros(3)),
         "error", "e_neg", area="losses"),
    Case("loss: int energies",
         lambda: eb.losses.hinge(torch.zeros(2, dtype=torch.int64), torch.zeros(2)), "error",
         "e_pos", area="losses"),
    Case("loss: reduction='avg'",
         lambda: eb.losses.hinge(torch.zeros(2), torch.zeros(2), reduction="avg"), "error",
         "reduction", area="losses"),
    Case("loss: margin=-1",
         lambda: eb.losses.hinge(torch.zeros(2), torch.zeros(2), margin=-1.0), "error",
         "margin", area="losses"),
    # fit
    Case("fit: num_steps=-1", lambda: _fit(num_steps=-1), "error", "num_steps",
         area="training"),
    Case("fit: batch_size=0", lambda: _fit(batch_size=0), "error", "batch_size",
         area="training"),
    Case("fit: empty data", lambda: _fit(data=z02), "error", r"data|empty|rows",
         area="training"),
    Case("fit: data with NaN", lambda: _fit(data=torch.full((32, 2), math.nan)), "error",
         r"data|finite|nan|diverg", area="training",
         errors=(ValueError, TypeError, eb.training.DivergenceError)),
    Case("fit: data int", lambda: _fit(data=torch.zeros(32, 2, dtype=torch.int64)), "error",
         r"data|\by\b|dtype", area="training"),
    Case("fit: unknown loss", lambda: _fit(loss="no_such_loss"), "error", "loss",
         area="training"),
    Case("fit: energy returns (B, 1)",
         lambda: _fit(energy=_Column()),
         "error", r"shape|\(B,\)", area="training"),
    Case("fit: clip_grad_norm=0", lambda: _fit(clip_grad_norm=0.0), "error",
         "clip_grad_norm", area="training"),
    Case("fit: keep_checkpoints=0", lambda: _fit(keep_checkpoints=0), "error",
         "keep_checkpoints", area="training"),
    Case("fit: checkpoint_dir is a file", _fit_file_as_folder, "error", "checkpoint_dir",
         area="training"),
    Case("fit: resume with another optimiser class", _fit_other_optimizer, "error",
         r"optimi[sz]er", area="training"),
    Case("read_checkpoint: forged, re-signed tensor file", _forged_checkpoint, "error",
         r"safetensors|tensor file", area="training"),
]
