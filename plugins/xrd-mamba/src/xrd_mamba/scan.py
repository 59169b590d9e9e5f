"""The selective scan of Mamba (S6), with one interface and two paths.

For every channel ``d`` of ``x`` and state ``n``, with the step ``Δ > 0`` (after softplus), a
negative real ``A`` and input-dependent ``B``, ``C``::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t x_t B_t        h_0 = 0
    y_t = C_t · h_t + D x_t,    then y_t ← y_t · silu(z_t) when a gate z is given

Shapes: ``x``, ``delta``, ``z`` (batch, L, d_inner); ``A`` (d_inner, d_state); ``B``, ``C``
(batch, L, d_state); ``D`` (d_inner,). ``selective_scan`` picks the path:

* ``cuda``: mamba-ssm's fused kernels (``pip install xrd-mamba[cuda]``), imported on first use and
  only for CUDA tensors, because the package fails to import without its compiled extension;
* ``torch``: the chunked scan below, pure PyTorch, on any device.

The chunked scan cuts the sequence into G chunks of T steps and scans all chunks side by side, so a
Python loop runs T ≈ L / G steps, each one vectorised update of batch × G lanes. A first pass scans
every chunk from a zero state; the true start state of each chunk then follows from a loop over the
chunks (start_{g+1} = exp(A ΣΔ over chunk g) start_g + end_g); a second pass rescans from the true
starts and emits y. States are laid out (channel, state, lane) with the lanes innermost, so every
update is one dense vector operation. The gradient is written by hand (the adjoint
λ_t = C_t ∂y_t + exp(Δ_{t+1} A) λ_{t+1} runs the same two passes backwards) and recomputes the
states from checkpoints every ⌈√T⌉ steps: memory grows as batch × G × √T × d_inner × d_state,
never as batch × L × d_inner × d_state.

Mamba-2's closed-form ("segsum") chunk does not carry over: here A differs per channel and state,
so the decay does not factor out of the sum over states, the closed form costs T times more work,
and its exp(-cumsum ΔA) overflows float32. Decays below exp(ln(tiny) / 2) (e⁻⁴³·⁷ in float32) are
held there: exp stays off its slow underflow path and products off denormal numbers, and results
change by less than 1e-18 relative.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["BACKENDS", "auto_chunk_size", "kernels_available", "selective_scan"]

BACKENDS = ("auto", "torch", "cuda")

#: elements of one per-step (d_inner, d_state, lanes) tensor the chunked scan aims for: on a CPU,
#: big enough that each vector operation outweighs its per-call cost (measured fastest at batch 8
#: and 32 on 2 cores: 2**19 beat 2**17 by 20-25 %); on a GPU it keeps the device busy
_STEP_ELEMENTS = {"cpu": 2**19, "cuda": 2**22}
#: the longest Python loop over steps the automatic chunk size allows (unless √L is longer)
_MAX_STEPS = 512
#: Δ A is held at or above ln(tiny) / 2 before exp (see the module docstring)
_FLOOR = {dtype: math.log(torch.finfo(dtype).tiny) / 2 for dtype in (torch.float32, torch.float64)}


def selective_scan(x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None, *, backend: str = "auto",
                   chunk_size: int | None = None) -> torch.Tensor:
    """y of the selective scan (see the module docstring), shape (batch, L, d_inner), dtype of ``x``.

    ``backend="auto"`` uses the fused kernels for CUDA tensors when mamba-ssm imports, else the
    chunked scan; ``"torch"`` always the chunked scan; ``"cuda"`` the kernels or a RuntimeError.
    ``chunk_size`` (steps per chunk, chunked scan only) changes speed and memory, not the result;
    None picks one from the shapes and device.
    """
    _check_shapes(x, delta, A, B, C, D, z)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if backend == "cuda":
        kernel, reason = _load_kernels()
        if kernel is None:
            raise RuntimeError(f"scan backend 'cuda' needs mamba-ssm's compiled kernels "
                               f"(pip install xrd-mamba[cuda] on a machine with CUDA); import failed: {reason}")
        if not x.is_cuda:
            raise RuntimeError(f"scan backend 'cuda' needs CUDA tensors, got tensors on {x.device}")
        return _kernel_scan(kernel, x, delta, A, B, C, D, z)
    if backend == "auto" and x.is_cuda:
        kernel, _ = _load_kernels()
        if kernel is not None:
            return _kernel_scan(kernel, x, delta, A, B, C, D, z)
    return _torch_scan(x, delta, A, B, C, D, z, chunk_size)


def kernels_available() -> bool:
    """Whether mamba-ssm's fused kernels import here (never true without CUDA and its build)."""
    return torch.cuda.is_available() and _load_kernels()[0] is not None


@functools.cache
def _load_kernels() -> tuple[Callable | None, str | None]:
    """mamba-ssm's ``selective_scan_fn``, or None and why it did not import."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # noqa: BLE001 - ImportError, or any error of its missing compiled extension
        return None, f"{type(exc).__name__}: {exc}"
    return selective_scan_fn, None


def _check_shapes(x, delta, A, B, C, D, z) -> None:
    for name, t in (("x", x), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z)):
        if t is not None and not (isinstance(t, torch.Tensor) and t.is_floating_point()):
            raise TypeError(f"{name} must be a floating-point tensor, got {type(t).__name__}")
    if x.ndim != 3:
        raise ValueError(f"x must be (batch, L, d_inner), got shape {tuple(x.shape)}")
    batch, length, width = x.shape
    if length < 1:
        raise ValueError("x must have at least one step (L >= 1)")
    if A.ndim != 2 or A.shape[0] != width:
        raise ValueError(f"A must be (d_inner={width}, d_state), got shape {tuple(A.shape)}")
    state = A.shape[1]
    expected = {"delta": (delta, x.shape), "B": (B, (batch, length, state)), "C": (C, (batch, length, state)),
                "D": (D, (width,)), "z": (z, x.shape)}
    for name, (t, shape) in expected.items():
        if t is not None and tuple(t.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)} to match x {tuple(x.shape)} and A "
                             f"{tuple(A.shape)}, got {tuple(t.shape)}")


def _kernel_scan(kernel, x, delta, A, B, C, D, z) -> torch.Tensor:
    """The fused kernels take (batch, channels, L) layouts and float32 A and D."""
    y = kernel(x.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A.float().contiguous(),
               B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(),
               D=None if D is None else D.float().contiguous(),
               z=None if z is None else z.transpose(1, 2).contiguous(), delta_softplus=False)
    return y.transpose(1, 2)


def _torch_scan(x, delta, A, B, C, D, z, chunk_size) -> torch.Tensor:
    """The chunked scan in float32 (float64 stays float64), plus the skip and the gate by autograd."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    xs, ds, As, Bs, Cs = (t.to(compute) for t in (x, delta, A, B, C))
    steps = chunk_size or auto_chunk_size(*x.shape, A.shape[1], x.device)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (xs, ds, As, Bs, Cs)):
        y = _ChunkedScan.apply(xs, ds, As, Bs, Cs, steps)
    else:
        geometry = _Geometry(xs, steps)
        lanes = (geometry.to_lanes(t) for t in (ds, xs, Bs, Cs))
        y = geometry.from_lanes(geometry.scan(*lanes, As, keep_checkpoints=False)[0])
    if D is not None:
        y = y + xs * D.to(compute)
    if z is not None:
        y = y * F.silu(z.to(compute))
    return y.to(x.dtype)


def auto_chunk_size(batch: int, length: int, d_inner: int, d_state: int, device: torch.device | str) -> int:
    """Steps per chunk: enough chunks to fill a per-step tensor of ``_STEP_ELEMENTS`` (so fewer for
    big batches), at least L / ``_MAX_STEPS`` of them and at most √L (the loop over chunks is serial)."""
    per_lane = batch * d_inner * d_state
    chunks = max(1, _STEP_ELEMENTS.get(torch.device(device).type, _STEP_ELEMENTS["cpu"]) // per_lane)
    chunks = min(max(chunks, -(-length // _MAX_STEPS)), math.isqrt(length - 1) + 1 if length > 1 else 1)
    return -(-length // chunks)


def _decay(delta_t: torch.Tensor, A_col: torch.Tensor, floor: float | None, out: torch.Tensor) -> torch.Tensor:
    """exp(Δ_t A) for one step, (d_inner, d_state, lanes) from Δ_t (d_inner, 1, lanes), into ``out``;
    ``floor`` None skips the clamp (see :func:`_floor`)."""
    product = torch.mul(delta_t, A_col, out=out)
    return (product if floor is None else product.clamp_min_(floor)).exp_()


def _floor(d: torch.Tensor, A: torch.Tensor) -> float | None:
    """The floor of Δ A for :func:`_decay`, or None when no Δ A of these inputs can fall below it
    (bounded from the extremes of Δ and A, one cheap pass over Δ): the clamp is then a no-op, and
    skipping it saves a pass over every per-step state tensor."""
    floor = _FLOOR[d.dtype]
    d_lo, d_hi = torch.aminmax(d)
    A_lo, A_hi = torch.aminmax(A)
    lowest = min(float(d_lo * A_lo), float(d_lo * A_hi), float(d_hi * A_lo), float(d_hi * A_hi))
    return None if lowest >= floor else floor  # NaN compares False: the clamp stays


def _steps(t: torch.Tensor, unit_axis: int | None = None) -> tuple[torch.Tensor, ...]:
    """Per-step views (k, lanes) of a (steps, k, lanes) tensor, with a unit axis inserted at
    ``unit_axis`` if asked: indexing once here saves microseconds per step and operand."""
    return (t if unit_axis is None else t.unsqueeze(unit_axis + 1)).unbind(0)


class _Geometry:
    """How a (batch, L, ·) sequence is cut into chunks and laid out as (step, ·, lane) with
    lane = b × chunks + g, and the passes of the chunked scan over that layout."""

    def __init__(self, x: torch.Tensor, chunk_size: int):
        self.batch, self.length, self.width = x.shape
        self.steps = min(chunk_size, self.length)
        self.chunks = -(-self.length // self.steps)
        self.lanes = self.batch * self.chunks
        self.every = math.isqrt(self.steps - 1) + 1 if self.steps > 1 else 1  # checkpoint spacing

    def to_lanes(self, t: torch.Tensor) -> torch.Tensor:
        """(batch, L, k) → contiguous (steps, k, lanes), zero-padded at the end (Δ = 0 steps change
        nothing); contiguous lanes make every per-step update a dense vector operation."""
        padding = self.chunks * self.steps - self.length
        if padding:
            t = F.pad(t, (0, 0, 0, padding))
        t = t.reshape(self.batch, self.chunks, self.steps, -1).permute(2, 3, 0, 1).contiguous()
        return t.view(self.steps, -1, self.lanes)

    def from_lanes(self, t: torch.Tensor) -> torch.Tensor:
        """(steps, k, lanes) → (batch, L, k), as two plain transposes (2-3× faster than one 4-D permute)."""
        t = t.transpose(1, 2).contiguous().transpose(0, 1).contiguous()
        return t.view(self.batch, self.chunks * self.steps, -1)[:, :self.length]

    def by_chunk(self, t: torch.Tensor) -> torch.Tensor:
        """(d_inner, d_state, lanes) viewed as (d_inner, d_state, batch, chunks)."""
        return t.view(*t.shape[:2], self.batch, self.chunks)

    def chunk_starts(self, end: torch.Tensor, chunk_decay: torch.Tensor) -> torch.Tensor:
        """True start state of every chunk from each chunk's end state when started from zero."""
        start = torch.zeros_like(end)
        end, chunk_decay, by_chunk = self.by_chunk(end), self.by_chunk(chunk_decay), self.by_chunk(start)
        for g in range(1, self.chunks):
            torch.addcmul(end[..., g - 1], chunk_decay[..., g - 1], by_chunk[..., g - 1], out=by_chunk[..., g])
        return start

    def chunk_ends(self, passed_back: torch.Tensor, chunk_decay: torch.Tensor) -> torch.Tensor:
        """The adjoint each chunk receives from the next one, from what each chunk passes back
        from its first step when its own incoming adjoint is zero."""
        incoming = torch.zeros_like(passed_back)
        passed_back, chunk_decay = self.by_chunk(passed_back), self.by_chunk(chunk_decay)
        by_chunk = self.by_chunk(incoming)
        for g in range(self.chunks - 2, -1, -1):
            torch.addcmul(passed_back[..., g + 1], chunk_decay[..., g + 1], by_chunk[..., g + 1],
                          out=by_chunk[..., g])
        return incoming

    def scan(self, d, u, B, C, A, keep_checkpoints: bool):
        """y (steps, d_inner, lanes) from lanes-layout Δ, x, B, C and, if asked, the states before
        every ``every``-th step (for the backward pass)."""
        A_col, floor = A[..., None], _floor(d, A)
        d_t, dx_t, B_t, C_t = _steps(d, 1), _steps(d * u, 1), _steps(B), _steps(C)
        a = u.new_empty(self.width, A.shape[1], self.lanes)
        h = u.new_zeros(self.width, A.shape[1], self.lanes)
        if self.chunks > 1:
            for t in range(self.steps):
                h.mul_(_decay(d_t[t], A_col, floor, a)).addcmul_(dx_t[t], B_t[t])
            h = self.chunk_starts(h, _decay(d.sum(0).unsqueeze(1), A_col, _FLOOR[u.dtype], a))
        y = u.new_empty(self.steps, self.width, self.lanes)
        y_t, product = _steps(y), torch.empty_like(h)
        checkpoints = u.new_empty(-(-self.steps // self.every), *h.shape) if keep_checkpoints else None
        for t in range(self.steps):
            if keep_checkpoints and t % self.every == 0:
                checkpoints[t // self.every] = h
            h.mul_(_decay(d_t[t], A_col, floor, a)).addcmul_(dx_t[t], B_t[t])
            torch.sum(torch.mul(h, C_t[t], out=product), 1, out=y_t[t])
        return y, checkpoints

    def scan_backward(self, gy, d, u, B, C, A, checkpoints):
        """Gradients of sum(gy ⊙ y) with respect to x, Δ, B, C (lanes layout) and A."""
        A_col, A_row, floor = A[..., None], A[:, None, :], _floor(d, A)
        d_t, dx_t, B_t, C_t, gy_t = _steps(d, 1), _steps(d * u, 1), _steps(B), _steps(C), _steps(gy, 1)
        shape = (self.width, A.shape[1], self.lanes)
        a, product = u.new_empty(shape), u.new_empty(shape)
        lam = u.new_zeros(shape)  # exp(Δ_{t+1} A) λ_{t+1}: what step t+1 passes back to step t
        if self.chunks > 1:
            for t in reversed(range(self.steps)):
                lam.addcmul_(gy_t[t], C_t[t]).mul_(_decay(d_t[t], A_col, floor, a))
            lam = self.chunk_ends(lam, _decay(d.sum(0).unsqueeze(1), A_col, _FLOOR[u.dtype], a))
        g_x, g_d, g_B, g_C = (torch.empty_like(t) for t in (d, d, B, C))
        g_x_t, g_B_t, g_C_t, u_t, d_flat = (_steps(t) for t in (g_x, g_B, g_C, u, d))
        g_d_row, g_dx = _steps(g_d, 1), torch.empty_like(d[0])
        g_A_lanes = torch.zeros_like(a)
        states = u.new_empty(self.every + 1, *shape)  # h_{t-1}, h_t, ... of one checkpoint interval
        decayed = u.new_empty(self.every, *shape)  # exp(Δ_t A) h_{t-1}
        decays = u.new_empty(self.every, *shape)
        for j in reversed(range(checkpoints.shape[0])):
            first, count = j * self.every, min(self.every, self.steps - j * self.every)
            states[0] = checkpoints[j]
            for s in range(count):
                t = first + s
                torch.mul(_decay(d_t[t], A_col, floor, decays[s]), states[s], out=decayed[s])
                torch.addcmul(decayed[s], dx_t[t], B_t[t], out=states[s + 1])
            for s in reversed(range(count)):
                t = first + s
                lam.addcmul_(gy_t[t], C_t[t])  # now λ_t = ∂loss/∂h_t
                torch.sum(torch.mul(states[s + 1], gy_t[t], out=product), 0, out=g_C_t[t])
                torch.sum(torch.mul(lam, B_t[t], out=product), 1, out=g_dx)
                torch.sum(torch.mul(lam, dx_t[t], out=product), 0, out=g_B_t[t])
                g_dA = torch.mul(lam, decayed[s], out=product)  # ∂loss/∂(Δ_t A)
                g_A_lanes.addcmul_(g_dA, d_t[t])
                torch.bmm(A_row, g_dA, out=g_d_row[t]).squeeze(1).addcmul_(g_dx, u_t[t])
                torch.mul(g_dx, d_flat[t], out=g_x_t[t])
                lam.mul_(decays[s])
        return g_x, g_d, g_B, g_C, g_A_lanes.sum(-1)


class _ChunkedScan(torch.autograd.Function):
    """y_t = C_t · h_t by the chunked scan, with the hand-written backward of :class:`_Geometry`;
    the lanes-layout inputs are kept for the backward pass instead of being laid out twice."""

    @staticmethod
    def forward(ctx, x, delta, A, B, C, chunk_size):
        geometry = _Geometry(x, chunk_size)
        d, u, Bl, Cl = (geometry.to_lanes(t) for t in (delta, x, B, C))
        y, checkpoints = geometry.scan(d, u, Bl, Cl, A, keep_checkpoints=True)
        ctx.save_for_backward(d, u, A, Bl, Cl, checkpoints)
        ctx.geometry = geometry
        return geometry.from_lanes(y)

    @staticmethod
    def backward(ctx, grad_y):
        d, u, A, B, C, checkpoints = ctx.saved_tensors
        geometry = ctx.geometry
        g_x, g_d, g_B, g_C, g_A = geometry.scan_backward(geometry.to_lanes(grad_y), d, u, B, C, A, checkpoints)
        wanted = ctx.needs_input_grad
        return (geometry.from_lanes(g_x) if wanted[0] else None, geometry.from_lanes(g_d) if wanted[1] else None,
                g_A if wanted[2] else None, geometry.from_lanes(g_B) if wanted[3] else None,
                geometry.from_lanes(g_C) if wanted[4] else None, None)
