"""``simulate``: the powder pattern (profile or peak list) of a CIF, or the views of an images simulator."""

from __future__ import annotations

import math
import sys

from xrdcore.cli.options import PEAK_SHAPES, grid, grid_arguments, parse_options, simulator_arguments

#: the commands of this module and their one-line help (also what `xrdcore --help` lists)
COMMANDS = {
    "simulate": "powder pattern of a CIF: profile (xy) or peak list",
}


def add_commands(commands) -> None:
    p = commands.add_parser("simulate", help=COMMANDS["simulate"])
    p.add_argument("cif", help="a CIF file")
    p.add_argument("--wavelength", default="CuKa1", help="line name (CuKa1, MoKa, ...) or Å")
    grid_arguments(p, "the profile's 2θ grid (default: the simulator's)")
    p.add_argument("--shape", default="gaussian", choices=PEAK_SHAPES)
    p.add_argument("--peaks", action="store_true", help="write the peak list instead of the profile")
    p.add_argument("--out", help="file to write (default: standard output)")
    p.add_argument("--plot", help="also save a PNG of the profile with the strongest peaks labelled")
    p.add_argument("--images", metavar="PNG", help="save the views of an images simulator side by side instead "
                   "(e.g. xrd-msdn's zone-axis: shaped spot patterns along x, y, z)")
    simulator_arguments(p)
    limits_arguments(p)
    p.set_defaults(run=_simulate)


def limits_arguments(p) -> None:
    """The bounds of one simulation (xrdcore.diffraction.pxrd): refused above them, before the work."""
    from xrdcore.builtin.pxrd import DEFAULT_MAX_RENDER
    from xrdcore.diffraction.pxrd import DEFAULT_MAX_COST, DEFAULT_MAX_REFLECTIONS

    p.add_argument("--max-reflections", type=_limit, default=DEFAULT_MAX_REFLECTIONS, metavar="N",
                   help=f"refuse a cell with more reflections in the range (memory, ~600 bytes each; "
                   f"default {DEFAULT_MAX_REFLECTIONS:.0e}; 'none': no bound)")
    p.add_argument("--max-cost", type=_limit, default=DEFAULT_MAX_COST, metavar="N",
                   help=f"refuse a cell with more symmetry-distinct reflections x scatterers (time; default "
                   f"{DEFAULT_MAX_COST:.0e}, about 25 s on 2 cores; 'none': no bound)")
    p.add_argument("--max-render", type=_limit, default=DEFAULT_MAX_RENDER, metavar="N",
                   help=f"refuse a profile needing more values computed (peaks x window points; default "
                   f"{DEFAULT_MAX_RENDER:.0e}, about 40 s; 'none': no bound)")


def _limit(text: str) -> float | None:
    """A positive bound, or 'none'."""
    import argparse

    if text.strip().lower() in ("none", "inf"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number or 'none', got {text!r}")
    return value


def _simulate(args) -> None:
    from xrdcore.builtin.pxrd import PXRDSimulator
    from xrdcore.data.cif import read_structure
    from xrdcore.diffraction.grid import DEFAULT_GRID
    from xrdcore.diffraction.pxrd import StructureError
    from xrdcore.storage import atomic_write_text

    structure = read_structure(args.cif)
    if args.images:
        _simulate_images(args, structure)
        if not (args.out or args.plot or args.peaks):
            return
    simulator = PXRDSimulator(wavelength=args.wavelength, grid=grid(args, DEFAULT_GRID), shape=args.shape,
                              max_reflections=args.max_reflections, max_cost=args.max_cost,
                              max_render=args.max_render, progress=True)
    try:
        (peaks,) = simulator.peaks([structure])
        profile = simulator.render([peaks])[0].cpu().numpy()
    except StructureError as exc:
        raise StructureError(f"{args.cif}: {exc}") from None
    header = (f"# {structure.composition.reduced_formula} from {args.cif}; wavelength {simulator.wavelength} Å; "
              f"xrdcore pxrd\n")
    if args.peaks:
        lines = ["# 2theta_deg d_A intensity h k l multiplicity"]
        lines += [f"{t:.5f} {d:.5f} {i:.3f} {h} {k} {l} {m}"
                  for t, d, i, (h, k, l), m in zip(peaks.two_theta, peaks.d, peaks.intensity, peaks.hkl,
                                                   peaks.multiplicity)]
    else:
        lines = ["# 2theta_deg intensity"] + [f"{t:.4f} {y:.6g}" for t, y in zip(simulator.grid.values, profile)]
    text = header + "\n".join(lines) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
    if args.plot:
        from xrdcore.diffraction.plot import plot_profile

        plot_profile(args.plot, simulator.grid.values, profile, peaks,
                     title=f"{structure.composition.reduced_formula}, {simulator.wavelength:.5f} Å")


def _simulate_images(args, structure) -> None:
    from xrdcore import get_registry
    from xrdcore.diffraction.plot import plot_images
    from xrdcore.train.inputs import images_input

    images = parse_options(args.simulator_option)
    if args.simulator:
        images["simulator"] = args.simulator
    spec = images_input(get_registry(), images)
    simulator = spec.create_simulator()
    try:
        (views,) = simulator.simulate([structure])
    except Exception as exc:
        raise ValueError(f"{args.cif}: simulator {spec.simulator!r} failed: {exc}") from exc
    titles = getattr(simulator, "view_titles", None) or [f"view {v + 1}" for v in range(len(views))]
    plot_images(args.images, views.cpu().numpy() if hasattr(views, "cpu") else views, titles=list(titles),
                title=f"{structure.composition.reduced_formula}: {spec.simulator} "
                      + ", ".join(f"{k}={v}" for k, v in spec.simulator_options))
    print(f"images: {args.images}")
