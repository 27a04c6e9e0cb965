"""The building blocks of every check: calling a student's function safely and comparing results.

A check takes the student's callable, feeds it random tensors of distinct sizes and raises
`CheckFailed` with a message written for the student. The message says what was expected and,
where a common mistake can be recognized, what the student probably did. It never prints the
expected numbers or the check's source.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import os
import warnings
from typing import Callable, Iterable, Sequence

import torch

from ..bridge import InputModified, raiser_name

# Close enough, whatever order of operations a correct answer uses.
TOLERANCES = {
    torch.float64: dict(rtol=1e-7, atol=1e-9),
    torch.float32: dict(rtol=2e-4, atol=2e-5),
}
DTYPES = (torch.float64, torch.float32)


class CheckFailed(AssertionError):
    """A failed check. Jupyter shows only its message, so the hidden check's source stays hidden."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


def devices(device: str | None = None) -> list[str]:
    """The devices to check on: CPU, plus CUDA when present; `device` or $ATTENTION_CHECK_DEVICE narrows it."""
    device = device or os.environ.get("ATTENTION_CHECK_DEVICE") or None
    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CheckFailed(f"device {device!r} was asked for, but CUDA is not available here")
        return [device]
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def cases(device: str | None, seed: int):
    """(device, dtype, generator) for every device and dtype a hidden check covers, each with its own seed."""
    for i, (dev, dtype) in enumerate(itertools.product(devices(device), DTYPES)):
        yield dev, dtype, generator(seed + 101 * i)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(g: torch.Generator, *shape: int, dtype=torch.float64, device="cpu", scale: float = 1.0) -> torch.Tensor:
    """Standard normal values drawn on the CPU (the same on every device), then moved to `device`."""
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype=dtype, device=device)


def tensors_like(args: Iterable, fn: Callable[[torch.Tensor], torch.Tensor]) -> list:
    return [fn(a) if isinstance(a, torch.Tensor) else a for a in args]


def _shape_hint(message: str) -> str:
    # Only a matmul's shape mismatch earns the transpose hint; other size errors have other causes.
    if "shapes cannot be multiplied" in message or "mat1 and mat2" in message:
        return (" A shape error usually means a matrix is applied from the wrong side or a transpose is"
                " missing: weights are stored (out, in), so W h_i is written h @ W.T.")
    return ""


def _in_place_hint(message: str) -> str:
    # Autograd's complaints about in-place operations on inputs that require grad (or views of them).
    if any(w in message for w in ("in-place operation", "modified inplace", "modified by an inplace operation")):
        return (" An input was modified in place (an operation ending in _, such as .t_() or .mul_(), or x /= ..., "
                "x[...] = ...), which breaks autograd even when it is undone afterwards: compute new tensors "
                "instead of editing the inputs.")
    return ""


_COURSE_DIRS = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(torch.__file__))


def student_location(error: BaseException) -> str:
    """Where in the student's code `error` was raised: "line N: <source>", or "" when unknown.

    A function run in the kernel reports it through the bridge (`location`); a local one is found in
    the traceback, as the innermost frame whose code is neither the course's nor torch's.
    """
    location = getattr(error, "location", "")
    if isinstance(location, str) and location:
        return location[:300]
    import linecache
    found = ""
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        path = os.path.abspath(code.co_filename) if not code.co_filename.startswith("<") else code.co_filename
        if not any(path.startswith(d + os.sep) for d in _COURSE_DIRS) and os.path.basename(path) != "contextlib.py":
            line = linecache.getline(code.co_filename, tb.tb_lineno, tb.tb_frame.f_globals).strip()
            found = f"line {tb.tb_lineno}" + (f": {line}" if line else "")
        tb = tb.tb_next
    return found[:300]


def describe_inputs(args: Sequence, kwargs: dict) -> str:
    """The shapes (or types) of the arguments, as the student can recognize them: "(2, 5, 4), (2, 3), m=7"."""
    def one(a):
        if isinstance(a, torch.Tensor):
            return str(tuple(a.shape))
        if isinstance(a, (bool, int, float)) or a is None:
            return repr(a)
        return type(a).__name__
    parts = [one(a) for a in args] + [f"{k}={one(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _not_implemented(name: str, error: NotImplementedError) -> str:
    stub = raiser_name(error) or name
    if stub in (name, "<module>", "<lambda>") or stub.startswith(f"{name}."):
        return f"{name} is not implemented yet: replace `raise NotImplementedError()` with your code."
    return f"{name} calls {stub}, which is not implemented yet: implement {stub} first."


@contextlib.contextmanager
def quiet():
    """Warnings and stderr from a correct answer must not cost points (nbgrader fails any cell that writes to stderr)."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def replaced_globals(fn: Callable, replacements: dict[str, Callable]):
    """Inside the block, the names the student's `fn` looks up globally resolve to `replacements`.

    A composite function (say `attention_decode`) usually calls the student's own helpers. Swapping
    those for the reference while it is checked means one wrong helper costs only its own points.
    """
    if hasattr(type(fn), "replaced_globals"):          # the student's function lives in the kernel
        with fn.replaced_globals(replacements):
            yield
        return
    namespace = getattr(fn, "__globals__", None)
    if namespace is None:
        yield
        return
    saved = {name: namespace[name] for name in replacements if name in namespace}
    try:
        namespace.update({name: f for name, f in replacements.items() if name in saved})
        yield
    finally:
        namespace.update(saved)


class Bounded:
    """A callable handed to the student's code that answers only calls the check can afford.

    Each call's tensors must have at most `max_dims` dimensions, each of at most `max_size` (the
    largest size the check feeds), the calls are at most `max_calls`, and only while the check that
    handed it over runs (`close()` ends that). Anything else raises CheckFailed naming the violation,
    before any computing: a composite cannot make the grader broadcast its way into gigabytes.
    """

    def __init__(self, fn: Callable, name: str, *, max_size: int = 64, max_dims: int = 4, max_calls: int = 400):
        self.fn, self.name = fn, name
        self.max_size, self.max_dims, self.max_calls = max_size, max_dims, max_calls
        self.calls, self.open = 0, True

    def close(self):
        self.open = False

    def __call__(self, *args, **kwargs):
        if not self.open:
            raise CheckFailed(f"{self.name} was called after the check that handed it over had finished.")
        self.calls += 1
        if self.calls > self.max_calls:
            raise CheckFailed(f"{self.name} was called more than {self.max_calls} times in one check: "
                              "the function calls it far more often than the math needs.")
        for i, a in enumerate([*args, *kwargs.values()]):
            if isinstance(a, torch.Tensor) and (a.dim() > self.max_dims or any(n > self.max_size for n in a.shape)):
                raise CheckFailed(f"{self.name} was called with argument {i + 1} of shape {tuple(a.shape)}, "
                                  "which is not a shape the math gives it here: check what you pass it.")
        return self.fn(*args, **kwargs)


@contextlib.contextmanager
def reference_helpers(fn: Callable, lesson: str, names: Iterable[str], *, max_size: int = 64,
                      max_calls: int = 400):
    """Inside the block, `fn`'s calls to the lesson's other graded functions go to the reference ones.

    The reference helpers are handed over `Bounded`: calls with tensors larger than `max_size` along
    any axis, more than `max_calls` calls, or calls after the block ends fail with CheckFailed.
    Where the reference is not at hand (a student without solutions/), the student's own helpers stay.
    """
    from .. import reference
    try:
        ref = reference.load(lesson)
    except reference.ReferenceUnavailable:
        yield
        return
    helpers = {name: Bounded(getattr(ref, name), name, max_size=max_size, max_calls=max_calls)
               for name in names if hasattr(ref, name)}
    try:
        with replaced_globals(fn, helpers):
            yield
    finally:
        for helper in helpers.values():
            helper.close()


class Student:
    """The student's function under test, called with care and described by name in every message."""

    def __init__(self, fn: Callable, name: str):
        if not callable(fn):
            raise CheckFailed(f"{name} is not a function (got {type(fn).__name__}). Define it with `def {name}(...)`.")
        self.fn, self.name = fn, name

    def fail(self, message: str):
        raise CheckFailed(f"{self.name}: {message}")

    def __call__(self, *args, **kwargs):
        before = [a.detach().clone() if isinstance(a, torch.Tensor) else None for a in args]
        with quiet():
            try:
                result = self.fn(*args, **kwargs)
            except NotImplementedError as e:
                raise CheckFailed(_not_implemented(self.name, e)) from None
            except CheckFailed:
                raise
            except InputModified as e:
                self.fail(f"argument {e.index + 1} was modified in place. Compute new tensors instead of editing "
                          "the inputs.")
            except Exception as e:  # the student's own error, reported in one line
                kind = getattr(e, "type_name", type(e).__name__)
                where = student_location(e)
                where = f" at {where}" if where else ""
                text = str(e)[:500].rstrip(". ")
                raise CheckFailed(f"{self.name} raised {kind}{where}: {text}. (inputs of shapes "
                                  f"{describe_inputs(args, kwargs)}){_shape_hint(text)}{_in_place_hint(text)}") from None
        for i, (a, b) in enumerate(zip(args, before)):
            if b is not None and not torch.equal(a.detach(), b):
                self.fail(f"argument {i + 1} was modified in place. Compute new tensors instead of editing the inputs.")
        return result

    # -- expectations on what it returned ------------------------------------------------------------

    def expect_tuple(self, got, n: int, what: str):
        if not isinstance(got, (tuple, list)) or len(got) != n:
            self.fail(f"should return {what}, a tuple of {n}; got {type(got).__name__}"
                      + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "") + ".")
        return got

    def expect_tensor(self, got, what: str, *, shape: Sequence[int], like: torch.Tensor, hint: str = ""):
        """A tensor of the given shape, on the device and with the dtype of `like`, with no NaN or inf."""
        if not isinstance(got, torch.Tensor):
            self.fail(f"{what} should be a torch.Tensor, got {type(got).__name__}.")
        if tuple(got.shape) != tuple(shape):
            if 1 in tuple(shape) and tuple(got.shape) == tuple(n for n in shape if n != 1) and "squeeze" not in hint:
                hint = (hint + " " if hint else "") + (
                    "An axis of size 1 is missing (a batch of 1, or a length of 1, here): a .squeeze() without a "
                    "dim drops every axis of size 1; squeeze only the axis you mean, as in .squeeze(-1).")
            self.fail(f"{what} should have shape {tuple(shape)}, got {tuple(got.shape)}." + (f" {hint}" if hint else ""))
        if got.device.type != like.device.type:
            self.fail(f"{what} is on {got.device.type}, but the inputs are on {like.device.type}: "
                      "create new tensors with device=x.device.")
        if got.dtype != like.dtype:
            self.fail(f"{what} has dtype {got.dtype}, but the inputs are {like.dtype}: keep the inputs' dtype.")
        if not torch.isfinite(got).all():
            self.fail(f"{what} contains NaN or inf.")
        return got

    def expect_close(self, got: torch.Tensor, want: torch.Tensor, what: str,
                     mistakes: Iterable[tuple[str, Callable[[], torch.Tensor | None]]] = ()):
        """`got` equals `want` within the dtype's tolerance; if not, name the first mistake it matches."""
        tol = TOLERANCES.get(want.dtype, TOLERANCES[torch.float32])
        if torch.allclose(got, want, **tol):
            return
        for description, candidate in mistakes:
            try:
                wrong = candidate()
            except Exception:  # a mistake that cannot be built for these shapes
                continue
            if wrong is not None and wrong.shape == got.shape and torch.allclose(got, wrong, **tol):
                self.fail(f"wrong values for {what}: it looks like {description}.")
        err = (got - want).abs().max().item()
        self.fail(f"wrong values for {what}: they differ from the expected ones by up to {err:.3g} (allowed: "
                  f"rtol={tol['rtol']:g}, atol={tol['atol']:g}).")

    def expect_gradients(self, args: Sequence, reference: Callable, output: Callable = lambda r: r, seed: int = 0):
        """Gradients flow from the output back to every floating input, and match the reference's."""
        grads = []
        for fn in (self, reference):
            g = generator(seed)                 # the same random cotangent for both
            leaves = tensors_like(args, lambda a: a.detach().clone().requires_grad_(a.is_floating_point()))
            out = output(fn(*leaves))
            if fn is self and not out.requires_grad:
                self.fail("no gradient flows back to the inputs. Avoid .detach(), .numpy(), .item() and "
                          "torch.no_grad() inside the function.")
            weights = randn(g, *out.shape, dtype=out.dtype).to(out.device)
            if fn is self:
                try:
                    (out * weights).sum().backward()
                except RuntimeError as e:
                    self.fail(f"the gradient cannot be computed: {str(e)[:300].rstrip('. ')}.{_in_place_hint(str(e))}")
            else:
                (out * weights).sum().backward()
            grads.append([a.grad for a in leaves if isinstance(a, torch.Tensor) and a.is_floating_point()])
        for i, (mine, ref) in enumerate(zip(*grads)):
            if ref is None:
                continue
            if mine is None:
                self.fail(f"no gradient reaches input {i + 1}: it should take part in the result.")
            if not torch.isfinite(mine).all():
                self.fail(f"the gradient with respect to input {i + 1} contains NaN or inf.")
            tol = TOLERANCES.get(ref.dtype, TOLERANCES[torch.float32])
            if not torch.allclose(mine, ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10):
                self.fail(f"the gradient with respect to input {i + 1} is wrong, though the values may look right.")


# --- tolerances derived from the dtype and the problem, and probes of a contract's edges -------------
# (Added for the checks that probe every edge of a function's contract; nothing above depends on them.)

import math  # noqa: E402
import re  # noqa: E402

ULPS = 256      # rounding steps a correct answer, in any order of operations, stays well inside


def derived_tolerance(dtype: torch.dtype, magnitude: float = 1.0) -> dict:
    """rtol and atol for a result whose correct values, computed in any order, differ by a few rounding
    steps of `dtype` times `magnitude`: the size of the largest intermediate a correct answer sums (say
    the largest |q|.|k| behind a score, times the largest |v| behind a context vector).

    float64 results get a tolerance near 1e-13 (times the magnitude), so an answer that computes part of
    a float64 call in float32 (a constant or a tensor created without dtype=) cannot pass; float32 ones
    near 3e-5, as loose as its rounding needs and no looser.
    """
    eps = torch.finfo(dtype).eps
    return dict(rtol=ULPS * eps, atol=ULPS * eps * max(1.0, float(magnitude)))


_MARGINS: list | None = None


@contextlib.contextmanager
def measured_margins():
    """Inside the block, every `expect_within` records (what, error / allowed) in the list it yields:
    how far inside (< 1) or outside (> 1) its tolerance each compared result was."""
    global _MARGINS
    saved, _MARGINS = _MARGINS, []
    try:
        yield _MARGINS
    finally:
        _MARGINS = saved


def excess(got: torch.Tensor, want: torch.Tensor, tol: dict) -> float:
    """max |got - want| / (atol + rtol |want|): at most 1 when `got` is within `tol` of `want`."""
    if got.shape != want.shape:
        return math.inf
    if got.numel() == 0:
        return 0.0
    allowed = tol["atol"] + tol["rtol"] * want.detach().abs()
    diff = (got.detach() - want.detach()).abs()
    if not torch.isfinite(diff).all():
        return math.inf
    return (diff / allowed).max().item()


def expect_within(f: "Student", got: torch.Tensor, want: torch.Tensor, what: str, tol: dict,
                  mistakes: Iterable[tuple] = (), *, float64_hint: bool = True):
    """`got` equals `want` within `tol`; if not, name the first mistake it matches, else say by how much.

    `mistakes` holds (description, () -> tensor or None) or (description, () -> tensor or None, tol):
    a candidate is matched within its own tolerance, or within `tol`. A float64 result that is right only
    to float32 precision is named as such (`float64_hint`).
    """
    ratio = excess(got, want, tol)
    if _MARGINS is not None:
        _MARGINS.append((f"{f.name}: {what}", ratio))
    if ratio <= 1:
        return
    for description, candidate, *own in mistakes:
        try:
            wrong = candidate()
        except Exception:  # a mistake that cannot be built for these shapes
            continue
        if wrong is not None and wrong.shape == got.shape and excess(got, wrong, own[0] if own else tol) <= 1:
            f.fail(f"wrong values for {what}: it looks like {description}.")
    err = (got.detach() - want.detach()).abs().max().item()
    single = {k: v / 16 for k, v in derived_tolerance(torch.float32, tol["atol"] / tol["rtol"]).items()}
    if float64_hint and want.dtype == torch.float64 and excess(got, want, single) <= 1:
        f.fail(f"wrong values for {what}: they are right only to float32 precision (off by up to {err:.2g}, where "
               f"a float64 answer is within {tol['atol']:.2g}): part of the computation runs in float32. Look "
               "for a tensor created without dtype= (torch.tensor(...), torch.ones(...)), .float(), or a "
               "float32 constant.")
    f.fail(f"wrong values for {what}: they differ from the expected ones by up to {err:.3g} (allowed here: "
           f"{tol['atol']:.2g} + {tol['rtol']:.2g} x |expected|).")


def call_with_keywords(f: "Student", **kwargs):
    """Call the student's function with keywords only, as the contract names its parameters.

    A TypeError about the names is reported as a signature that differs from the contract's; a tensor
    passed by keyword must come back unchanged, as one passed by position.
    """
    before = {k: v.detach().clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    try:
        result = f(**kwargs)
    except CheckFailed as e:
        text = str(e)
        if "raised TypeError" in text and ("keyword argument" in text or "positional argument" in text):
            names = ", ".join(kwargs)
            raise CheckFailed(f"{f.name} could not be called with the parameter names of the contract "
                              f"({names}), as in {f.name}({', '.join(f'{k}=...' for k in kwargs)}): name the "
                              f"parameters exactly so. ({text})") from None
        raise
    for k, b in before.items():
        if not torch.equal(kwargs[k].detach(), b):
            f.fail(f"argument {k} was modified in place. Compute new tensors instead of editing the inputs.")
    return result


def in_process(fn) -> bool:
    """Whether `fn` runs in this process, not in a kernel reached through the bridge (where tensors arrive
    as fresh, contiguous CPU or CUDA copies, so neither the meta device nor a view can reach it)."""
    from ..bridge import RemoteObject
    return not isinstance(getattr(fn, "fn", fn), RemoteObject)


def probes_meta(fn, device: str | None) -> bool:
    """Whether a hidden check adds the meta-device probe: for a function in this process, when no device
    was asked for (a check narrowed to one device runs on that device only)."""
    return device is None and not os.environ.get("ATTENTION_CHECK_DEVICE") and in_process(fn)


_DEVICE_ERRORS = ("is not on the expected device", "same device", "Cannot copy out of meta tensor",
                  "found at least two devices", "Expected all tensors to be on")
# Stricter on the meta device than on CUDA, which takes a 0-dim CPU tensor as masked_fill's value.
_NOT_DEVICE_ERRORS = ("Expected `value` to be on same device",)


def meta_probe(f: "Student", args: Sequence, kwargs: dict | None = None):
    """Call the student's function with every tensor on PyTorch's `meta` device (shapes, no data).

    A tensor the function creates without device= lands on the CPU, and mixing it with the inputs fails
    as it would on a GPU: that failure, or a result that is not on the inputs' device, fails the check
    with the student's line. Returns the result, or None where the function does what a tensor without
    data cannot (.item(), `if tensor:`, boolean indexing): that says nothing about devices, so it passes.
    """
    meta = lambda a: a.detach().to("meta") if isinstance(a, torch.Tensor) else a      # noqa: E731
    margs, mkwargs = [meta(a) for a in args], {k: meta(v) for k, v in (kwargs or {}).items()}
    with quiet():
        try:
            result = f.fn(*margs, **mkwargs)
        except CheckFailed:
            raise
        except Exception as e:
            text = str(e)
            if any(s in text for s in _DEVICE_ERRORS) and not any(s in text for s in _NOT_DEVICE_ERRORS):
                where = student_location(e)
                f.fail("creates a tensor on the CPU whatever device its inputs are on"
                       + (f" (at {where})" if where else "")
                       + f": {type(e).__name__}: {text[:200].strip().rstrip('.!')}. Create new tensors on the "
                         "inputs' device (torch.zeros(..., device=x.device, dtype=x.dtype), x.new_zeros(...), "
                         "torch.zeros_like(x)); on a GPU this fails.")
            return None
    outs = result if isinstance(result, (tuple, list)) else [result]
    for i, out in enumerate(outs):
        if isinstance(out, torch.Tensor) and out.device.type != "meta":
            f.fail(f"result {i + 1} is on {out.device.type} whatever device the inputs are on: create new tensors "
                   "with device=x.device (or x.new_zeros, torch.zeros_like), never on a fixed device.")
    return result


_SIZES_IN_ERROR = re.compile(r"\((\d+)\)|size (\d+)|\[(\d+(?:, \d+)*)\]|(\d+)x(\d+)")


def earlier_size_hint(message: str, now: dict, earlier: Iterable[dict]) -> str:
    """A hint for an error that names, for some size (say m), both its value in this call and the one it
    had in an earlier call: then something computed in an earlier call (a cached mask, a buffer kept
    between calls) is reused. `now` and each of `earlier` map a size's name to its value."""
    named = {int(n) for match in _SIZES_IN_ERROR.findall(message) for group in match if group
             for n in group.split(", ")}
    for before in earlier:
        for name, value in now.items():
            old = before.get(name)
            # 0 and 1 stand in many shapes; a value that is some size of this call names nothing stale.
            if old is not None and old > 1 and old not in now.values() and {old, value} <= named:
                return (f" The error names {name} = {old}, its size in an earlier call (here {name} = {value}): "
                        "something computed in an earlier call (a cached mask or buffer) is reused. Compute it "
                        "from the current inputs on every call.")
    return ""


def call_tracking(f: "Student", sizes: dict, call: Callable):
    """`call()`, a call of the student's function on inputs of the given sizes (a size's name to its value).

    An exception whose message names a size that an earlier call had (and this one has not) is reported as
    something computed in an earlier call and reused (a cache, a buffer kept at module level), instead of
    the hint its message would otherwise get.
    """
    seen = f.__dict__.setdefault("sizes_seen", [])
    try:
        result = call()
    except CheckFailed as e:
        text = str(e)
        hint = earlier_size_hint(text, sizes, seen) if "raised" in text else ""
        if hint:
            bare = text.split(" A shape error usually means")[0]
            raise CheckFailed(f"{bare}{hint}") from None
        raise
    if sizes not in seen:
        seen.append(sizes)
    return result


def keyword_or_positional(f: "Student", keywords: bool, sizes: dict, **kwargs):
    """The student's function called with the contract's parameter names (keywords) or by position, tracked."""
    if keywords:
        return call_tracking(f, sizes, lambda: call_with_keywords(f, **kwargs))
    return call_tracking(f, sizes, lambda: f(*kwargs.values()))


def tanh_magnitude(z: torch.Tensor, A: torch.Tensor, b: torch.Tensor | None, h: torch.Tensor) -> float:
    """The size of the rounding a correct tanh(z @ A.T + b) may carry: the largest sum of |A_jk z_k| (+ |b_j|)
    behind a pre-activation, times tanh's derivative 1 - h^2 there, at least 1."""
    S = z.detach().abs() @ A.detach().abs().transpose(-2, -1)
    if b is not None:
        S = S + b.detach().abs()
    return max(1.0, (S * (1 - h.detach().double().to(S.dtype) ** 2)).max().item() if S.numel() else 1.0)
