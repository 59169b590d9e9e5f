"""The selective scan against a float64 sequential reference: values, gradients, chunking, memory."""

import sys

import pytest
import torch
import torch.nn.functional as F
from xrd_mamba.scan import auto_chunk_size, kernels_available, selective_scan


def reference_scan(x, delta, A, B, C, D=None, z=None):
    """h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_t, y_t = C_t·h_t + D x_t, y_t · silu(z_t): a plain loop."""
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1)
    if D is not None:
        y = y + x * D
    return y if z is None else y * F.silu(z)


def make_inputs(batch, length, width=4, state=5, seed=0, gate=True):
    """Float64 leaves: Δ spans 1e-3 to ~3 and A -0.5 to -16, so decays run from ~1 to below e^-40."""
    g = torch.Generator().manual_seed(seed)
    tensors = {
        "x": torch.randn(batch, length, width, generator=g, dtype=torch.float64),
        "delta": F.softplus(torch.randn(batch, length, width, generator=g, dtype=torch.float64) * 2 - 2) + 1e-3,
        "A": -(0.5 + 15.5 * torch.rand(width, state, generator=g, dtype=torch.float64)),
        "B": torch.randn(batch, length, state, generator=g, dtype=torch.float64),
        "C": torch.randn(batch, length, state, generator=g, dtype=torch.float64),
    }
    if gate:
        tensors["D"] = torch.randn(width, generator=g, dtype=torch.float64)
        tensors["z"] = torch.randn(batch, length, width, generator=g, dtype=torch.float64)
    return {k: v.requires_grad_() for k, v in tensors.items()}


def value_and_grads(fn, inputs, grad_out):
    y = fn(**inputs)
    return y, torch.autograd.grad(y, list(inputs.values()), grad_out)


def relative_error(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize(("length", "chunk_size"), [(1, None), (2, 1), (7, 3), (64, 16), (100, 33), (257, None)])
def test_float32_scan_matches_float64_reference(length, chunk_size):
    inputs = make_inputs(3, length)
    grad_out = torch.randn(3, length, 4, dtype=torch.float64)
    y_ref, g_ref = value_and_grads(reference_scan, inputs, grad_out)
    inputs32 = {k: v.detach().float().requires_grad_() for k, v in inputs.items()}
    y, grads = value_and_grads(lambda **kw: selective_scan(**kw, backend="torch", chunk_size=chunk_size),
                               inputs32, grad_out.float())
    assert y.dtype == torch.float32
    assert relative_error(y, y_ref) < 1e-4
    for name, g, ref in zip(inputs, grads, g_ref):
        assert relative_error(g, ref) < 1e-4, name


def test_float64_scan_is_exact_up_to_rounding():
    inputs = make_inputs(2, 50, seed=1)
    grad_out = torch.randn(2, 50, 4, dtype=torch.float64)
    y_ref, g_ref = value_and_grads(reference_scan, inputs, grad_out)
    y, grads = value_and_grads(lambda **kw: selective_scan(**kw, backend="torch", chunk_size=8), inputs, grad_out)
    assert relative_error(y, y_ref) < 1e-12
    assert all(relative_error(g, ref) < 1e-12 for g, ref in zip(grads, g_ref))


def test_result_does_not_depend_on_chunk_size():
    inputs = {k: v.detach().float().requires_grad_() for k, v in make_inputs(2, 90, seed=2).items()}
    grad_out = torch.randn(2, 90, 4)
    results = [value_and_grads(lambda c=c, **kw: selective_scan(**kw, backend="torch", chunk_size=c), inputs,
                               grad_out) for c in (1, 4, 13, 45, 90, 1000)]
    y0, g0 = results[0]
    for y, grads in results[1:]:
        torch.testing.assert_close(y, y0, rtol=1e-5, atol=1e-5)
        for g, ref in zip(grads, g0):
            torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-4)


def test_inference_path_equals_training_path():
    inputs = make_inputs(2, 40, seed=3)
    with torch.no_grad():
        y_no_grad = selective_scan(**inputs, backend="torch", chunk_size=6)
    torch.testing.assert_close(y_no_grad, selective_scan(**inputs, backend="torch", chunk_size=6))


def test_half_precision_inputs_are_scanned_in_float32():
    inputs = {k: v.detach() for k, v in make_inputs(2, 30, seed=4).items()}
    y = selective_scan(**{k: v.to(torch.bfloat16) for k, v in inputs.items()}, backend="torch")
    assert y.dtype == torch.bfloat16
    reference = reference_scan(**{k: v.to(torch.bfloat16).double() for k, v in inputs.items()})
    assert relative_error(y, reference) < 1e-2  # bfloat16 output rounding only


def test_saved_memory_is_bounded_by_chunks_not_by_length_times_state():
    """What the backward keeps: the inputs (batch × L × channels) and checkpoint states, far below
    batch × L × d_inner × d_state of a loop that saves every state."""
    batch, length, width, state = 2, 2000, 8, 16
    inputs = {k: v.detach().float().requires_grad_() for k, v in make_inputs(batch, length, width, state, gate=False).items()}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        y = selective_scan(**inputs, backend="torch")
    y.sum().backward()
    beyond_inputs = sum(saved) - sum(v.numel() for v in inputs.values())
    all_states = batch * length * width * state
    assert beyond_inputs < all_states / 4, (beyond_inputs, all_states)


def test_auto_chunk_size_bounds_the_python_loops():
    for batch, length in ((1, 1), (8, 1700), (32, 8500), (512, 8500), (1, 100_000)):
        steps = auto_chunk_size(batch, length, 16, 16, "cpu")
        chunks = -(-length // steps)
        assert 1 <= steps <= length
        assert steps <= max(512, length ** 0.5 + 1) and chunks <= length ** 0.5 + 1


def test_bad_arguments_raise_clear_errors():
    inputs = {k: v.detach() for k, v in make_inputs(2, 10).items()}
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(**inputs, backend="triton")
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        selective_scan(**inputs, chunk_size=0)
    with pytest.raises(ValueError, match=r"B must have shape \(2, 10, 5\)"):
        selective_scan(**{**inputs, "B": inputs["B"][:, :9]})
    with pytest.raises(ValueError, match=r"A must be \(d_inner=4, d_state\)"):
        selective_scan(**{**inputs, "A": inputs["A"].T})
    with pytest.raises(ValueError, match="at least one step"):
        selective_scan(**{k: v[:, :0] if v.ndim == 3 else v for k, v in inputs.items()})
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        selective_scan(**{**inputs, "x": inputs["x"].long()})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_backend_without_kernels_is_a_clear_error():
    inputs = {k: v.detach().float() for k, v in make_inputs(1, 4).items()}
    with pytest.raises(RuntimeError, match=r"mamba-ssm|CUDA tensors"):
        selective_scan(**inputs, backend="cuda")


def test_auto_backend_on_cpu_never_imports_mamba_ssm():
    before = "mamba_ssm" in sys.modules
    selective_scan(**{k: v.detach().float() for k, v in make_inputs(1, 4).items()})
    assert ("mamba_ssm" in sys.modules) == before


GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
KERNELS = pytest.mark.skipif(not kernels_available(), reason="needs a CUDA GPU and mamba-ssm's compiled kernels "
                                                             "(pip install xrd-mamba[cuda])")


@pytest.mark.parametrize("backend", [pytest.param("torch", marks=GPU), pytest.param("cuda", marks=KERNELS)])
def test_scan_on_gpu_matches_the_float64_reference(backend):
    """On a GPU both paths, the chunked scan and mamba-ssm's kernels, against the float64 loop."""
    inputs = {k: v.detach().cuda().requires_grad_() for k, v in make_inputs(2, 300, 8, 16).items()}
    grad_out = torch.randn(2, 300, 8, dtype=torch.float64, device="cuda")
    y_ref, g_ref = value_and_grads(reference_scan, inputs, grad_out)
    inputs32 = {k: v.detach().float().requires_grad_() for k, v in inputs.items()}
    y, grads = value_and_grads(lambda **kw: selective_scan(**kw, backend=backend), inputs32, grad_out.float())
    assert y.is_cuda
    assert relative_error(y, y_ref) < 1e-4
    for name, g, ref in zip(inputs, grads, g_ref):
        assert relative_error(g, ref) < 1e-4, name
