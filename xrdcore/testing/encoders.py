"""The encoder checks, and the helpers that build an encoder and feed it real data as the core's
training does."""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from xrdcore.diffraction.profile import PeakBatch
from xrdcore.interfaces import Encoder
from xrdcore.registry import Registry
from xrdcore.testing import data
from xrdcore.testing._core import Checker, CheckReport, Skip, Subject, require, resolve, take_rows
from xrdcore.train.config import encoder_input_kind
from xrdcore.train.inputs import InputSpec
from xrdcore.train.model import HierarchicalClassifier, level_loss

#: the optimiser of every training check: the trainer's AdamW at a learning rate that shows
#: progress within a few steps
LEARNING_RATE = 1e-2
#: training steps of each hierarchy × scheduler combination: enough to see it run and stay finite
COMBINATION_STEPS = 2


def default_spec(kind: str, registry: Registry | None = None) -> InputSpec:
    """The input ``xrdcore bench --quick`` trains an encoder of input ``kind`` on: the default
    :class:`InputSpec` for profiles and peak lists, the installed images simulator at its ``tiny``
    size for images."""
    if kind == "images":
        from xrdcore import get_registry
        from xrdcore.train.inputs import images_input

        return images_input(registry or get_registry(), {}, size="tiny")
    return InputSpec(kind=kind)


def build_encoder(encoder: str | Callable[..., Encoder], /, *, spec: InputSpec | None = None,
                  registry: Registry | None = None, **options: Any) -> Encoder:
    """An encoder built as a training run builds it: its registered ``tiny`` variant (given a
    name; ``options`` on top) with the input sizes of ``spec`` (default :func:`default_spec`)
    from :meth:`InputSpec.encoder_kwargs`. A factory (a class) is built from ``options``."""
    subject = resolve("encoder", encoder, options, registry)
    return _build(subject, spec or default_spec(_input_kind(subject), subject.registry))


def sample_batch(spec: InputSpec, n: int | Sequence[int] = 4, *,
                 registry: Registry | None = None) -> tuple[Any, torch.Tensor]:
    """Model inputs of ``spec`` for packaged MP-20 structures (the first ``n``, or the rows
    ``n``) and their spglib space groups: profiles and peak lists made from the packaged peak
    lists by :meth:`InputSpec.make`, images simulated by the spec's simulator."""
    inputs, labels = _real_inputs(spec, registry)
    rows = torch.arange(n) if isinstance(n, int) else torch.as_tensor(list(n))
    return take_rows(inputs, rows), labels[rows]


def check_encoder(encoder: str | Callable[..., Encoder], /, *, spec: InputSpec | None = None,
                  registry: Registry | None = None, **options: Any) -> CheckReport:
    """Check an encoder the way the core checks its built-ins; raise ``AssertionError`` naming
    the encoder and the check that failed.

    ``encoder``: a registered name (its ``tiny`` variant is checked, ``options`` on top) or a
    factory such as an :class:`~xrdcore.interfaces.Encoder` subclass (built from ``options``).
    ``spec``: the input (default: :func:`default_spec` of its input kind). The checks, in order:

    * arguments: every argument of the factory has a default;
    * build: the registry builds it (interface, ``input_kind``, ``embed_dim``) for ``spec``;
    * forward: a ``(B, embed_dim)`` floating-point tensor, finite, on real patterns;
    * depends on its input: different patterns give different embeddings;
    * eval determinism: two forward passes in eval mode are identical;
    * view embeddings: ``(B, V, D)`` with ``V * D == embed_dim``, concatenated equal to forward;
    * seed determinism: two builds after the same ``torch.manual_seed`` have identical weights
      and outputs;
    * gradients: a loss on the embedding gives every parameter a finite, non-zero gradient;
    * bad batch: a badly shaped batch raises ``ValueError``;
    * safetensors round trip: weights saved and loaded with :mod:`xrdcore.train.checkpoint`
      give a freshly built encoder identical outputs;
    * device cpu / device cuda: ``.to(device)`` moves it, outputs agree (cuda skipped without a GPU);
    * training <hierarchy> × <scheduler>: two real training steps (the trainer's classifier,
      per-level losses and scheduler) stay finite, for every hierarchy × scheduler of the
      installed plugins that ``xrdcore bench`` would train it with; ``training per-view heads``
      as well for a multi-view encoder;
    * learning: 20 steps (flat hierarchy, sum) on all packaged patterns lower the loss below
      0.8 of its first value (the heads' biases alone go part of the way: that the encoder
      itself learns is what the gradients and input checks see).
    """
    subject = resolve("encoder", encoder, options, registry)
    checker = Checker(subject.label)
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        with checker.check("arguments"):
            _every_argument_has_a_default(subject.factory())
        with checker.check("build"):
            spec = spec or default_spec(_input_kind(subject), subject.registry)
            torch.manual_seed(0)
            model = _build(subject, spec)
            require(model.input_kind == spec.kind,
                    f"input_kind {model.input_kind!r} but the input is {spec.kind!r}")
        x, _ = sample_batch(spec, 4, registry=subject.registry)
        _check_outputs(checker, subject, spec, model, x)
        _check_training(checker, subject, spec, model)
    return checker.report


def _check_outputs(checker: Checker, subject: Subject, spec: InputSpec, model: Encoder, x: Any) -> None:
    batch = _size(x)
    with checker.check("forward"):
        out = model(x)
        require(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, not a tensor")
        require(tuple(out.shape) == (batch, model.embed_dim),
                f"output shape {tuple(out.shape)}, expected (B, embed_dim) = {(batch, model.embed_dim)}")
        require(out.dtype.is_floating_point, f"output dtype {out.dtype} is not floating point")
        require(bool(torch.isfinite(out).all()), f"{int((~torch.isfinite(out)).sum())} non-finite outputs")
    model.eval()
    with torch.no_grad():
        with checker.check("depends on its input"):
            out = model(x)
            require(bool((out != out[:1]).any()), f"the same embedding for {batch} different real patterns")
        with checker.check("eval determinism"):
            require(torch.equal(model(x), out), "two forward passes in eval mode differ")
        with checker.check("view embeddings"):
            views = model.view_embeddings(x)
            fits = views.dim() == 3 and views.shape[0] == batch
            require(fits and views.shape[1] * views.shape[2] == model.embed_dim,
                    f"shape {tuple(views.shape)}, expected (B, V, D), V * D = embed_dim = {model.embed_dim}")
            require(torch.allclose(views.flatten(1), out, atol=1e-5),
                    "the views concatenated differ from forward")
        with checker.check("seed determinism"):
            torch.manual_seed(1)
            first = _build(subject, spec)
            torch.manual_seed(1)
            second = _build(subject, spec)
            differ = [k for k, v in first.state_dict().items() if not torch.equal(v, second.state_dict()[k])]
            require(not differ, f"two builds after torch.manual_seed(1) differ in {', '.join(differ[:5])}")
            require(torch.equal(first.eval()(x), second.eval()(x)),
                    "two builds after the same seed give other outputs")
    model.train()
    with checker.check("gradients"):
        model.zero_grad()
        model(x).square().mean().backward()
        parameters = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        missing = [n for n, p in parameters if p.grad is None]
        require(not missing, f"no gradient reaches {', '.join(missing)}")
        broken = [n for n, p in parameters if not torch.isfinite(p.grad).all()]
        require(not broken, f"non-finite gradients in {', '.join(broken)}")
        zero = [n for n, p in parameters if not p.grad.any()]
        require(not zero, f"zero gradient for {', '.join(zero)}")
    with checker.check("bad batch"):
        bad = _badly_shaped(x, spec.kind)
        try:
            model(bad)
        except ValueError as exc:
            require(bool(str(exc).strip()), "ValueError without a message")
        else:
            raise AssertionError(f"accepted a batch of shape {_shape(bad)} without a ValueError")
    model.eval()
    with torch.no_grad(), checker.check("safetensors round trip"):
        from xrdcore.train.checkpoint import load_checkpoint, save_checkpoint

        torch.manual_seed(2)
        fresh = _build(subject, spec).eval()
        with tempfile.TemporaryDirectory() as folder:
            load_checkpoint(save_checkpoint(Path(folder) / "encoder.safetensors", model, {}), fresh)
        require(torch.equal(fresh(x), model(x)), "the reloaded encoder gives other outputs")
    with torch.no_grad():
        reference = model(x)
    for device in ("cpu", "cuda"):
        with torch.no_grad(), checker.check(f"device {device}"):
            if device == "cuda" and not torch.cuda.is_available():
                raise Skip("no CUDA device")
            moved = model.to(device)
            out = moved(_to(x, device))
            require(out.device.type == device, f"output on {out.device} after .to({device!r})")
            # cuDNN convolutions may use TF32: agree to a few parts in a thousand of the scale
            tolerance = 1e-3 * (1 + reference.abs().max().item())
            require(bool((out.cpu() - reference).abs().max() <= tolerance),
                    f"outputs on {device} differ from cpu")
    model.to("cpu")


def _check_training(checker: Checker, subject: Subject, spec: InputSpec, model: Encoder) -> None:
    from xrdcore.bench.harness import BenchSettings, find_combinations

    registry = subject.registry
    x, labels = sample_batch(spec, 8, registry=registry)
    combinations, _ = find_combinations(BenchSettings(encoders=subject.name), registry,
                                        input_kinds=(spec.kind,))
    runs = [(c.hierarchy, c.scheduler, "shared") for c in combinations]
    with torch.no_grad():
        if model.eval().view_embeddings(x).shape[1] > 1:  # a multistream encoder: per-view heads too
            runs.append(("flat", "sum", "per-view"))
    for hierarchy, scheduler, heads in runs:
        name = "training per-view heads" if heads == "per-view" else f"training {hierarchy} × {scheduler}"
        with checker.check(name):
            _, classifier = _train_steps(subject, spec, x, labels, hierarchy, scheduler, COMBINATION_STEPS,
                                         heads)
            broken = [n for n, p in classifier.named_parameters() if not torch.isfinite(p).all()]
            require(not broken,
                    f"non-finite parameters after {COMBINATION_STEPS} steps: {', '.join(broken[:5])}")
    with checker.check("learning"):
        x, labels = sample_batch(spec, len(data.ids()), registry=registry)
        losses, _ = _train_steps(subject, spec, x, labels, "flat", "sum", 20)
        first, last = losses[0], sum(losses[-3:]) / 3
        require(last < 0.8 * first, f"20 steps on the packaged patterns took the loss from {first:.3f} to "
                                    f"{last:.3f} (mean of the last 3), not below 0.8 of the first")


def _train_steps(subject: Subject, spec: InputSpec, x: Any, labels: torch.Tensor, hierarchy: str,
                 scheduler: str, steps: int,
                 heads: str = "shared") -> tuple[list[float], HierarchicalClassifier]:
    """``steps`` training steps of the encoder under test as the trainer takes them: a fresh
    encoder (seed 0) under :class:`HierarchicalClassifier`, per-level cross-entropies combined
    by the scheduler, AdamW; every loss must be finite."""
    registry = subject.registry
    hierarchy_ = registry.create("label_hierarchy", hierarchy)
    scheduler_ = registry.create("loss_scheduler", scheduler)
    torch.manual_seed(0)
    classifier = HierarchicalClassifier(_build(subject, spec), hierarchy_, heads=heads)
    optimiser = torch.optim.AdamW(classifier.parameters(), lr=LEARNING_RATE)
    targets = hierarchy_.targets(labels)
    losses = []
    for step in range(steps):
        shared, logits = classifier(x)
        level_losses = {name: level_loss(logits[name], targets[name]) for name in logits}
        loss, _ = scheduler_.combine(level_losses, shared if scheduler_.needs_shared else None, hierarchy_)
        require(bool(torch.isfinite(loss.detach())), f"loss {float(loss.detach())} at step {step + 1}")
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    return losses, classifier


# helpers --------------------------------------------------------------------------------------
def _build(subject: Subject, spec: InputSpec) -> Encoder:
    """Through the core's own :meth:`InputSpec.encoder_kwargs`, as ``build_model`` does."""
    return subject.create(**spec.encoder_kwargs(subject.factory(), subject.registry))


def _input_kind(subject: Subject) -> str:
    """The factory's declared ``input_kind``, else that of an instance built with its options."""
    return encoder_input_kind(subject.registry, subject.name, subject.options)


def _every_argument_has_a_default(factory: Callable[..., Any]) -> None:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return
    required = [p.name for p in parameters
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.default is p.empty]
    require(not required, f"arguments without a default: {', '.join(required)} "
                          "(create_encoder(name) must work; sizes come from the data)")


@lru_cache(maxsize=8)
def _real_inputs(spec: InputSpec, registry: Registry | None) -> tuple[Any, torch.Tensor]:
    """Inputs of every packaged structure, made once per spec."""
    labels = torch.as_tensor(data.space_groups())
    if spec.kind == "images":
        from xrdcore import get_registry

        simulator = spec.create_simulator(registry or get_registry())
        return torch.as_tensor(simulator.simulate(data.structures())).float(), labels
    return spec.make(PeakBatch.from_peak_lists(data.peak_lists())), labels


def _to(x: Any, device: str) -> Any:
    return {k: v.to(device) for k, v in x.items()} if isinstance(x, Mapping) else x.to(device)


def _size(x: Any) -> int:
    return len(next(iter(x.values()))) if isinstance(x, Mapping) else len(x)


def _shape(x: Any) -> Any:
    return {k: tuple(v.shape) for k, v in x.items()} if isinstance(x, Mapping) else tuple(x.shape)


def _badly_shaped(x: Any, kind: str) -> Any:
    """A trailing axis on every tensor; images lose their view axis instead."""
    if kind == "images":
        return x[:, 0]
    return {k: v[..., None] for k, v in x.items()} if isinstance(x, Mapping) else x[..., None]
