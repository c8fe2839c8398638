"""Optional ``torch.compile`` of hot steps, falling back to eager with one warning when it fails."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import Distribution

__all__ = ["COMPILE_MODES", "check_compile", "compiled", "Compiled", "MergeRepeatedWork"]

# What ``compile=`` accepts besides True/False/None.
COMPILE_MODES = ("default", "cuda-graph")

# The compiler entry point; a module attribute so that tests can simulate a missing compiler.
_torch_compile = torch.compile


def check_compile(compile: bool | str | None, *, name: str = "compile") -> str | None:
    """Return the mode that ``compile`` asks for: ``None``, ``"default"`` or ``"cuda-graph"``.

    ``False`` and ``None`` mean eager (``None`` is returned), ``True`` means ``"default"``.

    Raises:
        ValueError: for anything else, naming the argument and the allowed values.

    Example:
        >>> check_compile(True), check_compile(False), check_compile("cuda-graph")
        ('default', None, 'cuda-graph')
    """
    if compile is None or compile is False:
        return None
    if compile is True:
        return "default"
    if isinstance(compile, str) and compile in COMPILE_MODES:
        return compile
    raise ValueError(
        f"{name} must be False, True, 'default' or 'cuda-graph'; got {compile!r}"
    )


# Ops whose result is fresh, uninitialised memory: two of them are never the same value.
_UNMERGEABLE = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}


class MergeRepeatedWork:
    """An inductor graph pass: identical pure operations on identical inputs run once.

    A compiled block unrolls several solver steps, so what a step computes from inputs that
    do not change along the block (an energy's parameter- and ``x``-derived terms, such as
    the ``x`` columns of an MLP's first layer) appears once per step in the graph; inductor
    merges repeated element-wise work into its kernels, but not repeated matrix products.
    This pass (``post_grad_custom_pre_pass``, on the functional post-autograd graph) keeps
    the first of each set of identical ``call_function`` nodes (same ATen overload, same
    arguments) and points the others' users at it. Mutating, random (seeded) and
    allocating ops are left alone, so the graph computes the same values.

    Example:
        >>> import torch
        >>> g = torch.fx.symbolic_trace(lambda a: torch.ops.aten.neg.default(a)
        ...                             + torch.ops.aten.neg.default(a)).graph
        >>> MergeRepeatedWork()(g)
        >>> sum(n.op == "call_function" for n in g.nodes)
        2
    """

    def __call__(self, graph: torch.fx.Graph) -> None:
        seen: dict[tuple, torch.fx.Node] = {}
        for node in list(graph.nodes):
            target = node.target
            if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
                continue
            schema = target._schema
            if (
                schema.is_mutable
                or torch.Tag.nondeterministic_seeded in target.tags
                or target.overloadpacket.__name__ in _UNMERGEABLE
            ):
                continue
            try:
                key = (target, _frozen(node.args), _frozen(node.kwargs))
                hash(key)
            except TypeError:  # an unhashable argument: leave the node alone
                continue
            if key in seen:
                node.replace_all_uses_with(seen[key])
                graph.erase_node(node)
            else:
                seen[key] = node

    def uuid(self) -> str:
        """Identifies the pass for inductor's cache of compiled graphs."""
        return "ebmlab.MergeRepeatedWork.1"


_MERGE = MergeRepeatedWork()
# torch.compile'd functions by (fn, mode, dynamic, merge_repeated), see Compiled._build.
_BUILT: dict[tuple, Callable] = {}


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, *(_frozen(v) for v in value))
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, torch.fx.Node) or value is None:
        return value
    if isinstance(value, (bool, int, float, str, torch.dtype, torch.device, torch.layout,
                          torch.memory_format)):
        return (type(value).__name__, value)
    raise TypeError(f"not a plain argument: {type(value).__name__}")


def _has_cuda_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_cuda
    if isinstance(value, (tuple, list)):
        return any(_has_cuda_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_cuda_tensor(v) for v in value.values())
    return False


def _generators(values: Any) -> list[torch.Generator]:
    found: list[torch.Generator] = []
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, torch.Generator):
            found.append(v)
        elif isinstance(v, (tuple, list)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    return found


def _clone_tensors(value: Any) -> Any:
    """Copy the tensors of a (nested tuple / NamedTuple) result out of a CUDA graph's pool."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple):
        items = [_clone_tensors(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [_clone_tensors(v) for v in value]
    if isinstance(value, dict):  # a solver's state (inference compile=)
        return {k: _clone_tensors(v) for k, v in value.items()}
    return value


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 200:
        first = first[:197] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


class Compiled:
    """A callable that compiles ``fn`` on its first call and falls back to ``fn`` if that fails.

    Built by :func:`compiled`. ``is_eager`` tells, after the first call, whether the
    compiled function is in use (False) or ``fn`` runs eagerly (True); ``mode`` is the
    compile mode in effect (``"cuda-graph"`` becomes ``"default"`` on CPU tensors).

    Before each compiled call the states of the ``torch.Generator`` arguments (and of the
    global CPU generator) are saved and, if the call fails (the first compilation or a later
    recompilation), restored before ``fn`` runs, so the fallback draws the same random
    numbers as a purely eager run. An error that ``fn`` raises eagerly too propagates.
    """

    def __init__(
        self, fn: Callable, mode: str, what: str, dynamic: bool | None = False,
        merge_repeated: bool = False,
    ) -> None:
        self.fn = fn
        self.mode = mode
        self.what = what
        self.dynamic = dynamic
        self.merge_repeated = merge_repeated
        self.is_eager = False
        self._impl: Callable | None = None

    def _build(self, args: tuple, kwargs: dict) -> Callable:
        mode = self.mode
        if mode == "cuda-graph" and not _has_cuda_tensor((args, kwargs)):
            warnings.warn(
                f"compile='cuda-graph': CUDA graphs need CUDA tensors; compiling the "
                f"{self.what} with the default mode",
                UserWarning,
                stacklevel=4,
            )
            mode = self.mode = "default"
        key = (self.fn, mode, self.dynamic, self.merge_repeated)
        if key in _BUILT:
            return _BUILT[key]
        options: dict[str, Any] = {"dynamic": self.dynamic}
        if self.merge_repeated:
            # torch.compile takes a mode or inductor options, not both: "reduce-overhead"
            # is the CUDA-graph option.
            inductor: dict[str, Any] = {"post_grad_custom_pre_pass": _MERGE}
            if mode == "cuda-graph":
                inductor["triton.cudagraphs"] = True
            options["options"] = inductor
        elif mode == "cuda-graph":
            options["mode"] = "reduce-overhead"
        built = _torch_compile(self.fn, **options)
        if self.merge_repeated and _torch_compile is torch.compile:
            # One compiled function per (fn, options) in the process: a new torch.compile
            # with inductor options is a new backend, whose first call would compile again.
            _BUILT[key] = built
        return built

    def _fall_back(self, err: BaseException) -> None:
        self.is_eager = True
        self._impl = None
        warnings.warn(
            f"compile={self.mode!r}: could not compile the {self.what} ({_reason(err)}); "
            f"running eager",
            UserWarning,
            stacklevel=4,
        )

    def _call_impl(self, args: tuple, kwargs: dict) -> Any:
        if self.mode == "cuda-graph":
            # Each call is a new step of the CUDA-graph tree; results are copied out of the
            # graph's memory pool, which the next replay overwrites.
            torch.compiler.cudagraph_mark_step_begin()
            return _clone_tensors(self._impl(*args, **kwargs))
        return self._impl(*args, **kwargs)

    def _compiled_call(self, first: bool, args: tuple, kwargs: dict) -> Any:
        # torch.compile turns torch.distributions' argument validation off for the whole
        # process when it builds its first wrapper (pytorch/pytorch#185438), so every later
        # eager Distribution (eb.Gibbs.log_prob's support check included) would accept bad
        # values silently. It stays off only while dynamo builds and runs the compiled
        # function (what that patch needs); the user's setting is restored afterwards.
        before = Distribution._validate_args
        Distribution.set_default_validate_args(False)
        try:
            if first:
                self._impl = self._build(args, kwargs)
            return self._call_impl(args, kwargs)
        finally:
            Distribution.set_default_validate_args(before)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_eager:
            return self.fn(*args, **kwargs)
        generators = _generators((args, kwargs))
        saved = [g.get_state() for g in generators]
        saved_global = torch.random.get_rng_state()
        first = self._impl is None
        try:
            return self._compiled_call(first, args, kwargs)
        except Exception as err:
            # A compiler failure on the first call or on a later recompilation (a new shape or
            # dtype): the random streams are rewound and fn runs eagerly. An error that fn
            # raises eagerly as well is the caller's, not the compiler's: it propagates.
            for g, s in zip(generators, saved, strict=True):
                g.set_state(s)
            torch.random.set_rng_state(saved_global)
            if first:
                self._fall_back(err)
                return self.fn(*args, **kwargs)
            result = self.fn(*args, **kwargs)
            self._fall_back(err)
            return result


def compiled(
    fn: Callable, *, mode: str | None, what: str, dynamic: bool | None = False,
    merge_repeated: bool = False,
) -> Callable:
    """Return ``fn`` compiled with ``torch.compile`` in ``mode``, or ``fn`` itself for ``None``.

    The compilation happens on the first call (``dynamic=False``: one shape per run;
    ``"cuda-graph"`` uses ``mode="reduce-overhead"`` on CUDA tensors and, with a warning, the
    default mode on CPU tensors). If compiling or the first compiled call fails (no C++
    compiler, an unsupported operation, double backward, a failed recompilation for a new
    shape, ...), one ``UserWarning``
    ``"compile=...: could not compile the {what} ({reason}); running eager"`` is issued and
    ``fn`` runs eagerly from then on: never silently, never a wrong result.

    Args:
        fn: the function to compile (pure tensor code; generator arguments are fine).
        mode: ``None``, ``"default"`` or ``"cuda-graph"`` (see :func:`check_compile`).
        what: what ``fn`` is, for the warning, e.g. ``"MALA step"``.
        dynamic: ``torch.compile``'s ``dynamic``; ``None`` (automatic) lets a step counter
            that changes between calls become symbolic after one recompilation.
        merge_repeated: run :class:`MergeRepeatedWork` on the graph (for a block of
            unrolled steps: what each step recomputes from unchanging inputs runs once).

    Returns:
        ``fn`` when ``mode`` is ``None``, else a :class:`Compiled` wrapper.

    Example:
        >>> f = lambda t: t + 1
        >>> compiled(f, mode=None, what="step") is f
        True
    """
    if mode is None:
        return fn
    if mode not in COMPILE_MODES:
        raise ValueError(f"mode must be None, 'default' or 'cuda-graph'; got {mode!r}")
    return Compiled(fn, mode, what, dynamic, merge_repeated)
