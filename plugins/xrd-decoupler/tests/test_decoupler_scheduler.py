"""The ``mgda`` loss scheduler: through the registry, each normalisation against its definition,
β, degenerate gradients, evaluation mode, and a real training loop on a separable task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xrdcore
from xrdcore.interfaces import LossScheduler

from xrd_decoupler.hierarchy import superclass
from xrd_decoupler.mgda import MGDAScheduler, min_norm_point
from xrd_decoupler.plugin import TINY_ENCODER


def orthogonal_problem():
    """Two levels at z = 0: L_a = 1 + z_1 (gradient e_1, value 1), L_b = 4 + 2 z_2 (2 e_2, value 4)."""
    z = torch.zeros(1, 2, requires_grad=True)
    return {"space_group": 1 + z[0, 0], "crystal_system": 4 + 2 * z[0, 1]}, z


def closed_form(a2, b2):
    """w_a for two orthogonal vectors of squared norms a2, b2: b2 / (a2 + b2)."""
    return b2 / (a2 + b2)


def test_registered_and_built_through_the_registry():
    scheduler = xrdcore.create_scheduler("xrd-decoupler:mgda")
    assert isinstance(scheduler, MGDAScheduler) and isinstance(scheduler, LossScheduler)
    assert scheduler.needs_shared is True and MGDAScheduler.needs_shared is True
    assert scheduler.normalisation == "loss+"
    tuned = xrdcore.create_scheduler("xrd-decoupler:mgda", normalisation="l2", max_iter=7, tol=1e-5)
    assert (tuned.normalisation, tuned.max_iter, tuned.tol) == ("l2", 7, 1e-5)
    with pytest.raises(xrdcore.ComponentError, match="accepts"):
        xrdcore.create_scheduler("xrd-decoupler:mgda", normalization="l2")


@pytest.mark.parametrize("normalisation, expected", [
    ("none", closed_form(1, 4)),                   # raw gradients, norms 1 and 2
    ("l2", 0.5),                                   # unit vectors
    ("loss", closed_form(1, (2 / 4) ** 2)),        # g / L: norms 1 and 0.5
    ("loss+", closed_form(1, (2 / (4 * 2)) ** 2)),  # g / (L ||g||): norms 1 and 0.25
])
def test_each_normalisation_follows_its_definition(normalisation, expected):
    losses, z = orthogonal_problem()
    scheduler = MGDAScheduler(normalisation=normalisation)
    total, weights = scheduler.combine(losses, z)
    assert weights["space_group"] == pytest.approx(expected, rel=1e-9)
    assert weights["crystal_system"] == pytest.approx(1 - expected, rel=1e-9)
    assert total.item() == pytest.approx(expected * 1 + (1 - expected) * 4, rel=1e-6)
    step = scheduler.last_step
    assert step.source == "solver" and step.converged
    assert step.grad_norms == pytest.approx({"space_group": 1.0, "crystal_system": 2.0})


def test_the_weights_are_the_min_norm_point_of_the_normalised_gradients():
    torch.manual_seed(0)
    z = torch.randn(5, 4, requires_grad=True)
    heads = [torch.nn.Linear(4, n) for n in (6, 3, 4)]
    targets = [torch.randint(0, n, (5,)) for n in (6, 3, 4)]
    names = ["space_group", "crystal_system", "point_group"]
    losses = {name: F.cross_entropy(head(z), y) for name, head, y in zip(names, heads, targets)}
    grads = [torch.autograd.grad(loss, z, retain_graph=True)[0].flatten().double().numpy()
             for loss in losses.values()]
    values = np.array([loss.item() for loss in losses.values()])
    for normalisation, norms in [("none", np.ones(3)), ("l2", [np.linalg.norm(g) for g in grads]),
                                 ("loss", values), ("loss+", values * [np.linalg.norm(g) for g in grads])]:
        expected = min_norm_point(np.stack(grads) / np.asarray(norms)[:, None]).weights
        _, weights = MGDAScheduler(normalisation=normalisation).combine(losses, z)
        np.testing.assert_allclose(list(weights.values()), expected, rtol=1e-5, atol=1e-8)


def test_the_returned_loss_is_the_weighted_sum_and_carries_its_gradient():
    torch.manual_seed(1)
    z = torch.randn(8, 3, requires_grad=True)
    head = torch.nn.Linear(3, 5)
    losses = {"space_group": head(z).logsumexp(1).mean(), "point_group": (head(z)[:, :2] ** 2).mean()}
    total, weights = MGDAScheduler().combine(losses, z)
    assert all(isinstance(w, float) for w in weights.values())
    expected = sum(weights[n] * losses[n] for n in losses)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    (grad_total,) = torch.autograd.grad(total, head.weight, retain_graph=True)
    (grad_expected,) = torch.autograd.grad(expected, head.weight)
    torch.testing.assert_close(grad_total, grad_expected)


def test_beta_scales_the_share_of_each_level_but_never_enters_the_solver():
    hierarchy = superclass(levels=("crystal_system",), beta=0.5)
    plain_losses, z = orthogonal_problem()
    _, plain = MGDAScheduler(normalisation="none").combine(plain_losses, z)
    losses, z = orthogonal_problem()
    scheduler = MGDAScheduler(normalisation="none")
    total, weights = scheduler.combine(losses, z, hierarchy)
    assert scheduler.last_step.alpha == pytest.approx(plain)
    assert weights["space_group"] == pytest.approx(plain["space_group"])
    assert weights["crystal_system"] == pytest.approx(0.5 * plain["crystal_system"])
    assert total.item() == pytest.approx(weights["space_group"] * 1 + weights["crystal_system"] * 4, rel=1e-6)
    losses, z = orthogonal_problem()
    pure = MGDAScheduler(normalisation="none", use_hierarchy_weights=False)
    _, ignored = pure.combine(losses, z, hierarchy)
    assert ignored == pytest.approx(plain)


def test_shared_is_required_and_must_be_in_the_graph():
    losses, z = orthogonal_problem()
    with pytest.raises(ValueError, match="needs shared"):
        MGDAScheduler().combine(losses)
    with pytest.raises(ValueError, match="does not require grad"):
        MGDAScheduler().combine(losses, z.detach())
    with pytest.raises(TypeError, match="embedding tensor"):
        MGDAScheduler().combine(losses, [[0.0, 0.0]])
    copy = z.float() * 1  # e.g. a cast made after the heads read z: the losses never reach it
    with pytest.raises(ValueError, match="no loss depends on shared"):
        MGDAScheduler().combine(losses, copy)
    with pytest.raises(ValueError, match="no losses"):
        MGDAScheduler().combine({}, z)
    with pytest.raises(ValueError, match="scalar"):
        MGDAScheduler().combine({"space_group": z.expand(3, 2).sum(1)}, z)


def test_one_level_needs_no_solver():
    z = torch.ones(2, 2, requires_grad=True)
    scheduler = MGDAScheduler()
    total, weights = scheduler.combine({"space_group": z.sum()}, z, superclass())
    assert weights == {"space_group": 1.0} and total.item() == 4.0
    assert scheduler.last_step.source == "single"


def test_same_as_sum_only_for_a_single_unweighted_level():
    scheduler = MGDAScheduler()
    assert scheduler.same_as_sum(xrdcore.create_hierarchy("flat"))
    assert not scheduler.same_as_sum(superclass())
    assert not scheduler.same_as_sum(superclass(levels=(), weights={"space_group": 2.0}))
    pure = MGDAScheduler(use_hierarchy_weights=False)
    assert pure.same_as_sum(superclass(levels=(), weights={"space_group": 2.0}))


def test_zero_gradients_give_the_min_norm_point_not_nan():
    z = torch.zeros(3, 2, requires_grad=True)
    w = torch.ones(2, requires_grad=True)
    # a level that does not depend on z (its head only) has the zero gradient: Pareto-stationary
    losses = {"space_group": (z @ w).sum() + 3, "bravais": (w ** 2).sum(), "point_group": (z ** 2).sum() + 1}
    for normalisation in ("none", "l2", "loss", "loss+"):
        total, weights = MGDAScheduler(normalisation=normalisation).combine(losses, z)
        assert all(math.isfinite(v) and v >= 0 for v in weights.values())
        assert sum(weights.values()) == pytest.approx(1.0)
        assert torch.isfinite(total)
    # every gradient zero: uniform; so is a zero loss under 'loss+' (division guarded)
    flat = {"space_group": (z * 0).sum() + (w ** 2).sum(), "bravais": (z * 0).sum()}
    _, weights = MGDAScheduler(normalisation="loss+").combine(flat, z)
    assert weights == pytest.approx({"space_group": 0.5, "bravais": 0.5})


def test_non_finite_gradients_fall_back_to_uniform_and_keep_the_nan():
    z = torch.zeros(2, 2, requires_grad=True)
    scheduler = MGDAScheduler()
    total, weights = scheduler.combine({"space_group": (z * math.nan).sum(), "bravais": z.sum() + 1}, z)
    assert weights == {"space_group": 0.5, "bravais": 0.5}
    assert scheduler.last_step.source == "non_finite" and torch.isnan(total)


def test_loss_normalisations_reject_negative_losses():
    z = torch.zeros(1, 2, requires_grad=True)
    losses = {"space_group": z[0, 0] - 1, "bravais": z[0, 1] + 1}
    with pytest.raises(ValueError, match=r"losses >= 0.*space_group=-1"):
        MGDAScheduler(normalisation="loss").combine(losses, z)
    _, weights = MGDAScheduler(normalisation="l2").combine(losses, z)
    assert weights == pytest.approx({"space_group": 0.5, "bravais": 0.5})


def test_under_no_grad_the_last_weights_are_reused():
    scheduler = MGDAScheduler(normalisation="none")
    losses, z = orthogonal_problem()
    with torch.no_grad():
        _, before = scheduler.combine({k: v.detach() for k, v in losses.items()}, z)
    assert before == {"space_group": 0.5, "crystal_system": 0.5}
    _, trained = scheduler.combine(losses, z)
    with torch.no_grad():
        total, again = scheduler.combine({k: v.detach() for k, v in losses.items()}, z)
    assert again == trained and scheduler.last_step.source == "no_grad"
    assert total.item() == pytest.approx(again["space_group"] * 1 + again["crystal_system"] * 4)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="'none', 'l2', 'loss', 'loss\\+'"):
        MGDAScheduler(normalisation="L2")
    with pytest.raises(ValueError, match="max_iter"):
        MGDAScheduler(max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        MGDAScheduler(tol=-1.0)
    with pytest.raises(TypeError, match="use_hierarchy_weights"):
        MGDAScheduler(use_hierarchy_weights="yes")


# a real training loop ------------------------------------------------------------------------------
def separable_patterns(n: int, length: int, seed: int = 0):
    """Profiles whose peak positions depend on the space group (P-1, P2_1/c, Pnma, Fm-3m): each class
    has three peaks at its own places, jittered by a bin, with random heights; max 1."""
    rng = np.random.default_rng(seed)
    groups = np.array([2, 14, 62, 225])
    label = rng.integers(0, 4, n)
    x = np.zeros((n, length), dtype=np.float32)
    for i, c in enumerate(label):
        for k in range(3):
            position = int((0.1 + 0.2 * k + 0.05 * c) * length) + int(rng.integers(-1, 2))
            x[i, position] = rng.uniform(0.3, 1.0)
        x[i] /= x[i].max()
    return torch.from_numpy(x), torch.from_numpy(groups[label])


def test_mgda_trains_a_tiny_decoupler_with_superclass_heads():
    torch.manual_seed(0)
    length = 300
    hierarchy = xrdcore.create_hierarchy("xrd-decoupler:superclass")
    encoder = xrdcore.create_encoder("xrd-decoupler:decoupler", grid={"step": 85.0 / length}, **TINY_ENCODER)
    heads = torch.nn.ModuleDict({name: torch.nn.Linear(encoder.embed_dim, n)
                                 for name, n in hierarchy.num_classes.items()})
    scheduler = xrdcore.create_scheduler("xrd-decoupler:mgda")
    x, space_groups = separable_patterns(32, length)
    targets = hierarchy.targets(space_groups)
    optimiser = torch.optim.Adam([*encoder.parameters(), *heads.parameters()], lr=3e-3)
    summed = []
    for _ in range(25):
        shared = encoder(x)
        losses = {name: F.cross_entropy(heads[name](shared), targets[name]) for name in heads}
        total, weights = scheduler.combine(losses, shared, hierarchy)
        assert list(weights) == list(hierarchy.level_names)
        assert all(math.isfinite(w) and w >= 0 for w in weights.values())
        assert sum(weights.values()) == pytest.approx(1.0)  # beta = 1: the weights are alpha
        assert scheduler.last_step.converged and torch.isfinite(total)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        summed.append(sum(loss.item() for loss in losses.values()))
    first, last = np.mean(summed[:3]), np.mean(summed[-3:])
    assert last < 0.7 * first, f"summed loss {first:.3f} → {last:.3f}"
