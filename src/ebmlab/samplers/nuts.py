"""The No-U-Turn Sampler, batched over chains with one tree per chain (compacted working set)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ebmlab._checks import check_positive_int, check_target_acceptance
from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.samplers.base import Kernel, noise_like
from ebmlab.samplers.hmc import DIVERGENCE_THRESHOLD, check_mass, kinetic, mass_setup
from ebmlab.samplers.integrators import leapfrog_step
from ebmlab.samplers.state import NUTSInfo, State

__all__ = ["NUTS"]


def _no_u_turn(p_start: Tensor, p_end: Tensor, rho: Tensor, inv_mass: float | Tensor) -> Tensor:
    # Generalised criterion (Betancourt 2017): both end velocities still point along rho.
    if isinstance(inv_mass, Tensor):
        rho = rho * inv_mass
    dots = (torch.stack([p_start, p_end]) * rho).flatten(2).sum(2)  # two dots in one
    return (dots > 0).all(0)


def _merge_ok(first: tuple[Tensor, Tensor, Tensor], second: tuple[Tensor, Tensor, Tensor],
              inv_mass: float | Tensor) -> Tensor:
    """The criterion of two adjacent trees merged (Stan's, with the extra sub-tree checks).

    ``first`` and ``second`` are ``(p_outer, p_inner, rho)`` of each tree: the momentum at
    its end away from the other tree, at its end next to it, and its momentum sum. Besides the
    merged tree, each tree extended by the other's nearest state must not U-turn (Stan 2.23+),
    which stops the doubling of a trajectory whose halves each wrapped around. The three
    criteria's six dot products are computed in one batched product (the same numbers as
    one at a time).
    """
    (a_out, a_in, a_rho), (b_out, b_in, b_rho) = first, second
    rho = torch.stack([a_rho + b_rho, a_rho + b_in, b_rho + a_in]).unsqueeze(1)
    if isinstance(inv_mass, Tensor):
        rho = rho * inv_mass
    ends = torch.stack([a_out, b_out, a_out, b_in, a_in, b_out]).view(3, 2, *a_out.shape)
    dots = (ends * rho).flatten(3).sum(3)
    return (dots > 0).flatten(0, 1).all(0)


def _rows(t: Any, idx: Tensor | None) -> Any:
    """Rows ``idx`` of a per-chain tensor (all of them for ``idx=None``)."""
    return t if idx is None or t is None else t[idx]


def _put(full: Tensor, idx: Tensor | None, value: Tensor) -> Tensor:
    """A copy of ``full`` with rows ``idx`` replaced by ``value`` (``value`` for ``idx=None``)."""
    return value if idx is None else full.index_copy(0, idx, value)


class _Doubling:
    """The working set of one doubling: the chains still building, and their sub-tree.

    Every per-chain tensor here has one row per chain of the working set; ``idx`` maps them
    to the batch (``None``: all chains). :meth:`compact` drops the chains that stopped.
    """

    def __init__(self, kernel: NUTS, idx: Tensor | None, energy: Energy, x: Tensor | None,
                 tensors: dict[str, Any], fixed: tuple[str, ...] = ()) -> None:
        self.kernel, self.idx, self.full_energy, self.full_x = kernel, idx, energy, x
        self.t = tensors
        self.fixed = fixed  # the names of tensors that are not per chain
        self._bind()

    def _bind(self) -> None:
        idx = self.idx
        select = getattr(self.full_energy, "select_rows", None)
        self.energy = self.full_energy if idx is None or select is None else select(idx)
        self.x = _rows(self.full_x, idx)

    def compact(self, keep: Tensor) -> None:
        """Keep the rows ``keep`` of the working set."""
        self.idx = keep if self.idx is None else self.idx[keep]
        t = self.t
        done: dict[int, Tensor] = {}  # one index op per distinct tensor (levels share some)

        def rows(a: Tensor) -> Tensor:
            if id(a) not in done:
                done[id(a)] = a[keep]
            return done[id(a)]

        for name, value in t.items():
            if name == "starts":
                t[name] = [(rows(a), rows(b)) for a, b in value]
            elif name == "ends":
                t[name] = [rows(a) for a in value]
            elif isinstance(value, Tensor) and value.ndim and name not in self.fixed:
                t[name] = rows(value)
        self._bind()


class NUTS(Kernel):
    r"""The No-U-Turn Sampler with multinomial sampling, one tree per chain, all chains at once.

    Each step draws momenta :math:`p \sim \mathcal N(0, M/\beta)` and doubles a leapfrog
    trajectory in a random direction until it makes a U-turn (generalised criterion, checked on
    every binary sub-tree), diverges (:math:`\beta\Delta H > 1000` or non-finite) or reaches
    ``max_tree_depth``; the next state is drawn from the trajectory with weights
    :math:`e^{-\beta H}` (uniform progressive sampling inside a new sub-tree, biased
    progressive sampling when it joins the tree). The trees are per chain and the doubling
    loop is shared, with **compaction**: a chain whose tree has terminated leaves the working
    set, so each leapfrog step evaluates the gradient only for the chains still building
    (gradients computed = gradients used = ``Info.num_integration_steps`` summed; before
    compaction, lockstep chains computed 2-5 times more at 16 chains). The random draws are
    made for the whole batch as before (the same numbers under the same generator). To know
    the working set, the kernel reads from the device once per doubling and, after the
    first, once per leapfrog step inside it: the only host synchronisations of the kernel.
    An energy whose rows are not interchangeable (one row-dependent parameter, as inside
    :class:`ParallelTempering`) can offer ``select_rows(index) -> Energy``, the energy of
    those rows; it is called when the working set shrinks.

    Args:
        step_size: the leapfrog step :math:`\epsilon > 0`.
        beta: the inverse temperature :math:`\beta > 0`.
        max_tree_depth: the most doublings, so at most :math:`2^{depth} - 1` leapfrog steps.
        mass: a number or a positive diagonal of shape ``y_shape``.
        domain: optional :class:`ebmlab.Box` with reflecting walls.
        target_acceptance: what step-size adaptation aims at during burn-in (0.8, Stan's
            default); ``None`` turns adaptation off.

    Raises:
        ValueError: if ``step_size``, ``beta``, ``mass`` or ``max_tree_depth`` is not positive.

    References:
        Hoffman and Gelman, "The No-U-Turn Sampler", JMLR, 2014, arXiv:1111.4246;
        Betancourt, "A Conceptual Introduction to Hamiltonian Monte Carlo", 2017,
        arXiv:1701.02434 (multinomial sampling, generalised criterion).

    Example:
        >>> import torch, ebmlab as eb
        >>> kernel = eb.samplers.NUTS(step_size=0.3)
        >>> energy = eb.energies.Quadratic(torch.eye(2))
        >>> state = kernel.init(torch.zeros(4, 2), energy)
        >>> state, info = kernel.step(state, energy, generator=torch.Generator().manual_seed(0))
        >>> bool((info.tree_depth >= 1).all())
        True
    """

    def __init__(
        self,
        step_size: float,
        beta: float = 1.0,
        max_tree_depth: int = 10,
        *,
        mass: float | Tensor = 1.0,
        domain: Box | None = None,
        target_acceptance: float | None = 0.8,
    ) -> None:
        self._init_common(step_size, beta, domain)
        self.max_tree_depth = check_positive_int(max_tree_depth, "max_tree_depth")
        self.mass = check_mass(mass)
        self.target_acceptance = check_target_acceptance(target_acceptance)
        self._setup()

    def _setup(self) -> None:
        self._inv_mass, self._momentum_scale = mass_setup(self.mass, self.beta)

    def step(
        self,
        state: State,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[State, NUTSInfo]:
        """Build one tree per chain and draw the next state from it."""
        y0, e0, g0 = state
        chains = y0.shape[0]
        dtype, device = y0.dtype, y0.device
        view = (chains,) + (1,) * (y0.ndim - 1)
        inv_mass = self._inv_mass
        if isinstance(inv_mass, Tensor) and (inv_mass.device != device or inv_mass.dtype != dtype):
            inv_mass = inv_mass.to(device, dtype)
        per_chain_mass = isinstance(inv_mass, Tensor) and inv_mass.ndim == y0.ndim
        step_size = self.step_size
        if isinstance(step_size, Tensor) and step_size.ndim:
            step_size = step_size.reshape(-1)  # per chain: (chains, 1, ...) -> (chains,)

        p0 = noise_like(y0, generator).mul_(self._momentum_scale)
        h0 = e0 + kinetic(p0, inv_mass)
        tree: dict[str, Any] = {
            "left": (y0, p0, g0), "right": (y0, p0, g0), "sample": state, "rho": p0,
            "log_w_tree": torch.zeros(chains, dtype=dtype, device=device),
            "is_accepted": torch.zeros(chains, dtype=torch.bool, device=device),
        }
        active = torch.ones(chains, dtype=torch.bool, device=device)
        depth = torch.zeros(chains, dtype=torch.long, device=device)
        # Per-chain sums over every state computed, for the Info.
        stats = {
            "accept": [],  # one (chains,) row per leapfrog step, summed at the end
            "num": torch.zeros(chains, dtype=torch.long, device=device),
            "divergent": torch.zeros(chains, dtype=torch.long, device=device),
            "partial": [],  # (row of accept, working set, accept, is_finite) when compacted
        }
        idx: Tensor | None = None
        for j in range(self.max_tree_depth):
            forward = torch.rand(chains, generator=generator, dtype=dtype, device=device) < 0.5
            signed_step = torch.where(forward, 1.0, -1.0).to(dtype).mul_(step_size).view(view)
            work = _Doubling(self, idx, energy, x, {
                "forward": _rows(forward, idx), "h0": _rows(h0, idx),
                # Leapfrog coefficients of this doubling, computed once (not per step).
                "neg_half": _rows(signed_step * -0.5, idx),
                "drift": _rows(signed_step * inv_mass, idx),
                "inv_mass": _rows(inv_mass, idx) if per_chain_mass else inv_mass,
                "y0": _rows(y0, idx), "e0": _rows(e0, idx), "g0": _rows(g0, idx),
            }, fixed=() if per_chain_mass else ("inv_mass",))
            self._build(work, tree, j, stats, chains, self._bounds(y0), generator)
            # Biased progressive sampling: move into the new sub-tree w.p. min(1, W_new/W_old).
            u = torch.rand(chains, generator=generator, dtype=dtype, device=device)
            depth += active
            if work.t["alive"].shape[0] == 0:
                break
            active = self._join(work, tree, u, active)
            idx = active.nonzero().flatten()  # the one host read per doubling
            if idx.numel() == 0:
                break
            if idx.numel() == chains:
                idx = None

        num_steps, rate = self._totals(stats, chains)
        info = NUTSInfo(rate, tree["is_accepted"], stats["divergent"] > 0, depth, num_steps)
        return tree["sample"], info

    @staticmethod
    def _totals(stats: dict[str, Any], chains: int) -> tuple[Tensor, Tensor]:
        """The steps per chain and the mean acceptance; the steps made on a compacted working
        set are scattered into one ``(steps, chains)`` matrix here (one op for all, not two
        per step). Summed as one matrix (not accumulated): the rounding of earlier releases."""
        rows, partial, num = stats["accept"], stats["partial"], stats["num"]
        if not partial:
            return num, torch.stack(rows).sum(0) / num.clamp(min=1)
        like = partial[0][2]
        full = [r for r in rows if r is not None]
        matrix = like.new_zeros((len(rows), chains))
        if full:
            matrix[[k for k, r in enumerate(rows) if r is not None]] = torch.stack(full)
        counts = torch.tensor([q[1].numel() for q in partial], device=like.device)
        where = torch.tensor([q[0] for q in partial], device=like.device)
        cols = torch.cat([q[1] for q in partial])
        matrix[where.repeat_interleave(counts), cols] = torch.cat([q[2] for q in partial])
        num = num + torch.bincount(cols, minlength=chains)
        bad = ~torch.cat([q[3] for q in partial])
        stats["divergent"] = stats["divergent"].index_add(0, cols, bad.long())
        return num, matrix.sum(0) / num.clamp(min=1)

    def _build(  # noqa: C901 - one algorithm, kept in one place on purpose
        self,
        work: _Doubling,
        tree: dict[str, Any],
        j: int,
        stats: dict[str, Any],
        chains: int,
        bounds: tuple[Tensor, Tensor] | None,
        generator: torch.Generator | None,
    ) -> None:
        """Build the new sub-tree of doubling ``j`` for the chains of the working set."""
        t = work.t
        dtype, device = t["h0"].dtype, t["h0"].device
        beta = self.beta
        n = t["h0"].shape[0]
        fm = t["forward"].view((n,) + (1,) * (t["y0"].ndim - 1))  # before y0 is dropped
        idx = work.idx
        t["y"], t["p"], t["g"] = (torch.where(fm, _rows(r, idx), _rows(lft, idx))
                                  for r, lft in zip(tree["right"], tree["left"], strict=True))
        t["alive"] = torch.ones(n, dtype=torch.bool, device=device)
        t["sub_log_w"] = torch.full((n,), -math.inf, dtype=dtype, device=device)
        # The start's state (unused unless a state is taken), and no longer carried.
        t["sub_y"], t["sub_e"], t["sub_g"] = t.pop("y0"), t.pop("e0"), t.pop("g0")
        t["total"] = torch.zeros_like(t["p"])
        t["starts"] = [(t["total"], t["p"])] * (j + 1)
        t["ends"] = [t["p"]] * (j + 1)  # level l: the last momentum of the last 2^l block
        size = 1 << j
        for i in range(size):
            if t["alive"].shape[0] == 0:  # every chain stopped in doubling 0 or 1
                torch.rand(chains, generator=generator, dtype=dtype, device=device)
                continue
            y, p, e, g = leapfrog_step(t["y"], t["p"], t["g"], work.energy, work.x,
                                       t["neg_half"], t["drift"], bounds)
            inv_mass = t["inv_mass"]
            log_w = t["h0"] - e - kinetic(p, inv_mass)
            if beta != 1.0:
                log_w = log_w.mul_(beta)
            is_finite = log_w >= -DIVERGENCE_THRESHOLD  # false for NaN too
            accept = torch.where(is_finite, log_w.clamp(max=0.0).exp(), 0.0)
            idx = work.idx
            if idx is None:
                stats["accept"].append(accept)
                stats["num"] += 1
                stats["divergent"] += ~is_finite
            else:  # scattered into the batch's rows at the end of the step (_totals)
                stats["accept"].append(None)
                stats["partial"].append((len(stats["accept"]) - 1, idx, accept, is_finite))
            alive = t["alive"] & is_finite
            # Uniform progressive sampling inside the sub-tree: take state i w.p. w_i / W.
            new_log_w = torch.logaddexp(t["sub_log_w"], log_w)
            u = _rows(torch.rand(chains, generator=generator, dtype=dtype, device=device), idx)
            take = (u < (log_w - new_log_w).exp()) & alive
            tv = take.view((take.shape[0],) + (1,) * (y.ndim - 1))
            t["sub_y"] = torch.where(tv, y, t["sub_y"])
            t["sub_e"] = torch.where(take, e, t["sub_e"])
            t["sub_g"] = torch.where(tv, g, t["sub_g"])
            t["sub_log_w"] = new_log_w
            # Running momentum sums; every completed aligned block of 2^l states is a
            # sub-tree whose U-turn criterion must hold.
            # Each block is the merge of two halves of 2^(l-1) states: the merged criterion
            # and Stan's two extra checks across the halves (_merge_ok).
            starts, ends, total = t["starts"], t["ends"], t["total"]
            # The levels l <= j with i % 2^l == 0 (all for i = 0) and (i + 1) % 2^l == 0.
            top = j if i == 0 else min(j, (i & -i).bit_length() - 1)
            done = min(j, ((i + 1) & -(i + 1)).bit_length() - 1)
            for level in range(1, top + 1):
                starts[level] = (total, p)
            total = total + p
            for level in range(1, done + 1):
                before, p_first = starts[level]
                if level == 1:  # two single states: the extra checks are the same one
                    alive = alive & _no_u_turn(p_first, p, total - before, inv_mass)
                    continue
                middle, p_mid = starts[level - 1]  # the second half's start
                alive = alive & _merge_ok((p_first, ends[level - 1], middle - before),
                                          (p, p_mid, total - middle), inv_mass)
            for level in range(done + 1):
                ends[level] = p
            t.update(y=y, p=p, g=g, total=total, alive=alive)
            if i + 1 < size:  # compaction: the stopped chains leave the working set
                keep = alive.nonzero().flatten()  # one host read per leapfrog step
                if keep.numel() == 0 and j >= 2:
                    break
                if keep.numel() < alive.shape[0]:
                    work.compact(keep)

    @staticmethod
    def _join(work: _Doubling, tree: dict[str, Any], u: Tensor, active: Tensor) -> Tensor:
        """Join the new sub-tree to the working set's trees; return the chains still going."""
        t, idx = work.t, work.idx
        alive = t["alive"]
        av = alive.view((alive.shape[0],) + (1,) * (t["y"].ndim - 1))
        log_w_tree = _rows(tree["log_w_tree"], idx)
        switch = (_rows(u, idx) < (t["sub_log_w"] - log_w_tree).exp()) & alive
        sw = switch.view(av.shape)
        sample = tree["sample"]
        tree["sample"] = State(
            _put(sample.position, idx, torch.where(sw, t["sub_y"], _rows(sample.position, idx))),
            _put(sample.energy, idx, torch.where(switch, t["sub_e"], _rows(sample.energy, idx))),
            _put(sample.grad, idx, torch.where(sw, t["sub_g"], _rows(sample.grad, idx))),
        )
        tree["is_accepted"] = _put(tree["is_accepted"], idx,
                                   _rows(tree["is_accepted"], idx) | switch)
        tree["log_w_tree"] = _put(tree["log_w_tree"], idx, torch.where(
            alive, torch.logaddexp(log_w_tree, t["sub_log_w"]), log_w_tree))
        forward = t["forward"]
        left_p, right_p = tree["left"][1], tree["right"][1]
        end = (t["y"], t["p"], t["g"])
        for side, grow in (("right", alive & forward), ("left", alive & ~forward)):
            gv = grow.view(av.shape)
            tree[side] = tuple(_put(o, idx, torch.where(gv, n, _rows(o, idx)))
                               for n, o in zip(end, tree[side], strict=True))
        # The old tree's ends before the join: the far one and the one next to the new sub-tree.
        old_left, old_right = _rows(left_p, idx), _rows(right_p, idx)
        fv = forward.view(av.shape)
        old_far, old_near = torch.where(fv, old_left, old_right), torch.where(fv, old_right,
                                                                              old_left)
        old_rho = _rows(tree["rho"], idx)
        new_first = t["starts"][-1][1] if len(t["starts"]) > 1 else t["p"]
        rho = torch.where(av, old_rho + t["total"], old_rho)
        tree["rho"] = _put(tree["rho"], idx, rho)
        still = alive & _merge_ok((old_far, old_near, old_rho), (t["p"], new_first, t["total"]),
                                  t["inv_mass"])
        return _put(torch.zeros_like(active), idx, still)
