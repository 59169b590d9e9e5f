"""Write the corpus's input files (``python tests/corpus/make_corpus.py``): CIFs, patterns, run
directories, model packages and data exports, most of them damaged copies of real ones. The files are
committed; this script says how each was made, so they can be rebuilt (and new ones added) the same
way. What each case must give is in ``cases.toml``, not here.

Usage: ``python tests/corpus/make_corpus.py [cifs] [patterns] [runs] [models] [exports]``.

Real sources: tests/data/NaCl.cif (rock salt, Fm-3m), the MP-20 sample (tests/data/mp20_sample.csv,
Materials Project structures with their space groups), NaCl's simulated pattern, a tiny model trained
on the MP-20 sample and packaged, and the export of that sample's peak cache.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(TESTS.parent))
NACL = (TESTS / "data" / "NaCl.cif").read_text()
MP20 = TESTS / "data" / "mp20_sample.csv"


def write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def mp20_rows() -> dict[str, dict[str, str]]:
    with MP20.open(newline="") as handle:
        return {row["material_id"]: row for row in csv.DictReader(handle)}


def symmetric(cif: str) -> str:
    """pymatgen's CIF of a structure in its space group (symbol, number, operations)."""
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(CifWriter(Structure.from_str(cif, fmt="cif"), symprec=0.01))


def with_occupancy(text: str, na: str, cl: str) -> str:
    return (text.replace("_atom_site_fract_z\n", "_atom_site_fract_z\n_atom_site_occupancy\n")
            .replace("Na1 Na 0 0 0", f"Na1 Na 0 0 0 {na}").replace("Cl1 Cl 0.5 0.5 0.5", f"Cl1 Cl 0.5 0.5 0.5 {cl}"))


OPS_HEADER = "loop_\n_symmetry_equiv_pos_as_xyz\n"


def with_operations(text: str, operations: list[str]) -> str:
    loop = OPS_HEADER + "".join(f"'{op}'\n" for op in operations)
    return text.replace("loop_\n_atom_site_label", loop + "loop_\n_atom_site_label")


def huge_cell() -> str:
    positions = np.random.default_rng(20).random((343, 3))
    return ("data_huge\n_symmetry_space_group_name_H-M 'P 1'\n" + "".join(f"_cell_length_{k} 150\n" for k in "abc")
            + "".join(f"_cell_angle_{k} 90\n" for k in ("alpha", "beta", "gamma"))
            + "loop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\nloop_\n_atom_site_label\n_atom_site_type_symbol\n"
              "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
            + "".join(f"C{i} C {x:.5f} {y:.5f} {z:.5f}\n" for i, (x, y, z) in enumerate(positions)))


def cifs() -> None:
    out = HERE / "cifs"
    shutil.rmtree(out, ignore_errors=True)
    rows = mp20_rows()
    nacl_ops = symmetric(NACL)
    files = {
        # accepted, with the space group spglib gives (International Tables: NaCl Fm-3m, No. 225)
        "nacl_symbol_only.cif": NACL,
        "nacl_with_operations.cif": nacl_ops,
        "nacl_hall_only.cif": NACL.replace("_symmetry_space_group_name_H-M 'F m -3 m'",
                                           "_space_group_name_Hall '-F 4 2 3'"),
        "nacl_it_number_only.cif": NACL.replace("_symmetry_space_group_name_H-M 'F m -3 m'",
                                                "_space_group_IT_number 225"),
        "nacl_capitals_with_operations.cif": nacl_ops.replace("Fm-3m", "'FM-3M'"),
        "nacl_capitals_symbol_only.cif": NACL.replace("'F m -3 m'", "'FM-3M'"),
        "nacl_mmcif_operation_tag.cif": re.sub(r"_symmetry_(space_group_name_H-M|Int_Tables_number).*\n", "", nacl_ops)
        .replace("_symmetry_equiv_pos_as_xyz", "_space_group_symop.operation_xyz"),
        "nacl_crlf.cif": NACL.replace("\n", "\r\n"),
        "nacl_byte_order_mark.cif": "\ufeff" + NACL,
        "nacl_uncertainties.cif": NACL.replace("5.64\n", "5.640(2)\n"),
        "nacl_comments.cif": "# rock salt\n" + NACL.replace("\nloop_", "\n# the sites\nloop_"),
        "nacl_no_symmetry_p1.cif": NACL.replace("_symmetry_space_group_name_H-M 'F m -3 m'\n", ""),
        "nacl_setting_suffix.cif": NACL.replace("'F m -3 m'", "'F m -3 m :1'"),
        "nacl_partial_occupancy.cif": with_occupancy(NACL, "0.5", "1").replace(
            "Na1 Na 0 0 0 0.5", "Na1 Na 0 0 0 0.5\nK1 K 0 0 0 0.5"),
        "mp20_p1_fast_path.cif": rows["mp-1224506"]["cif"],
        # MP-20 structures written in their space groups (MP's numbers: 194, 14, 62, 148, 139, 229)
        "mp20_hexagonal_KVCl3.cif": symmetric(rows["mp-1205604"]["cif"]),
        "mp20_monoclinic_Ca2MnWO6.cif": symmetric(rows["mp-19108"]["cif"]),
        "mp20_orthorhombic_LuRhO3.cif": symmetric(rows["mp-1205366"]["cif"]),
        "mp20_rhombohedral_Sr3Au2.cif": symmetric(rows["mp-30421"]["cif"]),
        "mp20_tetragonal_body_centred_TmTiGa.cif": symmetric(rows["mp-1025238"]["cif"]),
        "mp20_cubic_body_centred_Tb4Ga12Ag.cif": symmetric(rows["mp-1208448"]["cif"]),
        # refused
        "unknown_symbol.cif": NACL.replace("'F m -3 m'", "'X y z'"),
        "unknown_hall_symbol.cif": NACL.replace("_symmetry_space_group_name_H-M 'F m -3 m'",
                                                "_space_group_name_Hall '-Q 9 9'"),
        "garbage_symbol_with_operations.cif": nacl_ops.replace("Fm-3m", "banana"),
        "negative_cell_length.cif": NACL.replace("_cell_length_a 5.64", "_cell_length_a -5.64"),
        "zero_cell_length.cif": NACL.replace("_cell_length_c 5.64", "_cell_length_c 0"),
        "angle_out_of_range.cif": NACL.replace("_cell_angle_alpha 90", "_cell_angle_alpha 200"),
        "angles_form_no_cell.cif": NACL.replace("_cell_angle_alpha 90", "_cell_angle_alpha 150")
        .replace("_cell_angle_beta 90", "_cell_angle_beta 100").replace("_cell_angle_gamma 90", "_cell_angle_gamma 40"),
        "nan_cell_length.cif": NACL.replace("_cell_length_b 5.64", "_cell_length_b nan"),
        "it_number_out_of_range.cif": NACL.replace("_symmetry_space_group_name_H-M 'F m -3 m'",
                                                   "_space_group_IT_number 231"),
        "symbol_and_number_disagree.cif": NACL.replace("'F m -3 m'", "'F m -3 m'\n_space_group_IT_number 62"),
        "symbol_and_operations_disagree.cif": with_operations(NACL, ["x,y,z", "-x,-y,z"]),
        "operations_without_centring.cif": "\n".join(
            line for line in nacl_ops.splitlines() if not re.match(r"\s*\d+\s+'.*[xyz]\+1/2.*'$", line)) + "\n",
        "operation_unreadable.cif": with_operations(NACL.replace("'F m -3 m'", "'P 1'"), ["x,y,q"]),
        "operations_not_a_group.cif": with_operations(NACL.replace("'F m -3 m'", "'P 1'"),
                                                      ["x,y,z", "-x,y,z+1/3"]),
        "too_many_operations.cif": with_operations(NACL.replace("_symmetry_space_group_name_H-M 'F m -3 m'\n", ""),
                                                   [f"x,y,z+{k}/997" for k in range(800)]),
        "symbol_does_not_fit_cell.cif": NACL.replace("'F m -3 m'", "'P 63/m m c'"),
        "capitals_with_two_origins.cif": NACL.replace("'F m -3 m'", "'FD-3M'"),
        "occupancy_above_one.cif": with_occupancy(NACL, "1", "1.2"),
        "zero_occupancy.cif": with_occupancy(NACL, "0", "1"),
        "overlapping_atoms.cif": NACL.replace("Cl1 Cl 0.5 0.5 0.5", "Cl1 Cl 0.5 0.5 0.5\nNa2 Na 0.01 0 0"),
        "duplicate_tag.cif": NACL.replace("_cell_length_a 5.64", "_cell_length_a 5.64\n_cell_length_a 6.0"),
        "truncated_loop.cif": NACL[:-30],
        "unknown_coordinate.cif": NACL.replace("Cl1 Cl 0.5 0.5 0.5", "Cl1 Cl ? 0.5 0.5"),
        "unknown_element.cif": NACL.replace("Na1 Na", "Xx1 Xx"),
        "no_scattering_factor.cif": NACL.replace("Na1 Na", "Es1 Es"),
        "two_data_blocks.cif": NACL + NACL.replace("data_NaCl", "data_NaCl_again"),
        "no_atoms.cif": "data_empty\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n",
        "not_a_cif.cif": "This is a powder diffraction report, not a CIF.\n",
        "empty.cif": "",
        "binary.cif": bytes(range(256)) * 4,
        "tiny_cell.cif": NACL.replace("5.64", "0.3"),
        # bounded: a 150 Å P1 cell of 343 carbon atoms at random (no symmetry to reduce it) has about
        # 11 million reflections up to 90° 2θ at Cu Kα1, above the simulator's limit of 10 million
        "huge_cell.cif": huge_cell(),
    }
    for name, content in files.items():
        write(out / name, content)


def nacl_pattern(step: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """NaCl's simulated Cu Kα1 profile, 5-90° (counts-like: a background and peaks up to ~10,000)."""
    from pymatgen.core import Structure

    from xrdcore.builtin.pxrd import PXRDSimulator
    from xrdcore.diffraction.grid import AngleGrid

    simulator = PXRDSimulator(grid=AngleGrid(5, 90, step))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = Structure.from_str(NACL, fmt="cif")
    (peaks,) = simulator.peaks([structure])
    profile = simulator.render([peaks])[0].cpu().numpy().astype(float)
    return simulator.grid.values, np.round(50 + 10_000 * profile, 1)


def patterns() -> None:
    out = HERE / "patterns"
    shutil.rmtree(out, ignore_errors=True)
    x, y = nacl_pattern()
    rows = [f"{a:.3f} {b:g}" for a, b in zip(x, y)]
    xy = "# NaCl, Cu Ka1, simulated\n2theta intensity\n" + "\n".join(rows) + "\n"
    down = "\n".join(reversed(rows)) + "\n"
    repeated = "\n".join(rows[:800] + [rows[799].split()[0] + " " + str(float(rows[799].split()[1]) + 10)]
                         + rows[800:]) + "\n"
    sigma = "\n".join(f"{r} {np.sqrt(b):.2f}" for r, b in zip(rows, y)) + "\n"
    scan = ("data_nacl\n_diffrn_radiation_wavelength 1.54056\nloop_\n_pd_meas_2theta_scan\n_pd_meas_counts_total\n"
            + "".join(f"{a:.3f} {b:g}(5)\n" for a, b in zip(x, y)))
    ranged_down = ("data_nacl\n_pd_meas_2theta_range_min 89.95\n_pd_meas_2theta_range_max 5.0\n"
                   "_pd_meas_2theta_range_inc -0.05\nloop_\n_pd_proc_intensity_net\n"
                   + "".join(f"{b:g}\n" for b in y[::-1]))
    files = {
        "nacl.xy": xy,
        "nacl_descending.xy": down,
        "nacl_repeated_angle.xy": repeated,
        "nacl.xye": sigma,
        "nacl_crlf_header.csv": "2theta,intensity\r\n" + "\r\n".join(r.replace(" ", ",") for r in rows) + "\r\n",
        "nacl_semicolon.dat": "% exported\n" + "\n".join(r.replace(" ", "; ") for r in rows) + "\n",
        "nacl_utf16.txt": ("2θ I\r\n" + "\r\n".join(rows) + "\r\n").encode("utf-16"),
        "nacl_latin1_header.txt": ("Winkel (°) Intensität\n" + "\n".join(rows) + "\n").encode("latin-1"),
        "nacl_pdcif_scan.cif": scan,
        "nacl_pdcif_descending_range.cif": ranged_down,
        "nacl_film_from_30_degrees.xy": "\n".join(r for r, a in zip(rows, x) if a >= 30) + "\n",
        # refused
        "empty.xy": "",
        "binary.xy": bytes(range(256)) * 4,
        "nan_intensity.xy": "10 5\n11 nan\n12 7\n",
        "infinite_angle.xy": "10 5\ninf 6\n",
        "negative_angle.xy": "-1 5\n1 6\n2 7\n",
        "angle_above_180.xy": "170 5\n180 6\n190 7\n",
        "angles_back_and_forth.xy": "10 5\n12 6\n11 7\n13 8\n",
        "one_angle_only.xy": "10 5\n10 6\n10 7\n",
        "constant_intensity.xy": "10 5\n11 5\n12 5\n",
        "one_row.xy": "2theta counts\n10.0 5\n",
        "negative_intensity.xy": "10 5\n11 -1\n12 7\n",
        "decimal_comma.csv": "10,5;100\n11,5;200\n",
        "ragged.csv": "10,5\n11,6\n12,7,1\n",
        "two_columns.xye": "10 5\n11 6\n",
        "word_in_data.txt": "# scan\n10 5\n11 abc\n12 7\n",
        "pattern.raw": "10 5\n11 6\n",
        "pdcif_no_intensity.cif": "data_x\n_cell_length_a 5.0\n",
        "pdcif_range_does_not_end_at_max.cif": "data_x\n_pd_meas_2theta_range_min 10\n_pd_meas_2theta_range_max 11\n"
                                               "_pd_meas_2theta_range_inc 0.1\nloop_\n_pd_meas_counts_total\n1\n2\n",
        "pdcif_zero_step.cif": "data_x\n_pd_meas_2theta_range_min 10\n_pd_meas_2theta_range_max 11\n"
                               "_pd_meas_2theta_range_inc 0\nloop_\n_pd_meas_counts_total\n1\n2\n",
        "pdcif_bad_wavelength.cif": scan.replace("_diffrn_radiation_wavelength 1.54056",
                                                 "_diffrn_radiation_wavelength 0"),
    }
    for name, content in files.items():
        write(out / name, content)


def trained_run(work: Path) -> tuple[Path, Path]:
    """A tiny RCNet trained 2 epochs on the MP-20 sample, and that sample's peak cache."""
    from xrdcore.data.cache import BuildSpec, build_cache
    from xrdcore.train import InputSpec, TrainConfig, train

    cache = build_cache(work / "cache", BuildSpec("csv", {"path": str(MP20)}), progress=False)
    config = TrainConfig("rcnet", hierarchy="multilevel", encoder_options={"blocks": 2, "kernel_size": 5,
                                                                          "channels": (8,)},
                         input=InputSpec(grid={"step": 0.05}), epochs=2, batch_size=8, warmup_epochs=1)
    train(config, cache, work / "run", device="cpu", progress=False)
    return work / "run", cache.path


def stable_record(path: Path) -> dict:
    """A run's config.json without what differs between machines (environment, local data path)."""
    record = json.loads(path.read_text())
    record.pop("environment", None)
    if isinstance(record.get("data"), dict):
        record["data"]["path"] = None
    return record


def runs(run: Path) -> None:
    out = HERE / "runs"
    shutil.rmtree(out, ignore_errors=True)
    record = stable_record(run / "config.json")
    checkpoint = (run / "checkpoints" / "best.safetensors").read_bytes()
    good = json.dumps(record, indent=1)
    images = json.loads(good)
    images["config"]["input"]["kind"] = "images"
    missing = json.loads(good)
    missing["encoder"]["qualified_name"] = "nowhere:nothing"
    missing["config"]["encoder"] = "nowhere:nothing"
    folders = {
        "empty": {"README.txt": "a folder that is no run\n"},
        "config_not_json": {"config.json": good[:200]},
        "foreign_config": {"config.json": json.dumps({"format": "someone-else/2"})},
        "no_checkpoint": {"config.json": good},
        "truncated_checkpoint": {"config.json": good, "checkpoints/best.safetensors": checkpoint[:1000]},
        "garbage_checkpoint": {"config.json": good, "checkpoints/best.safetensors": b"\x00" * 64 + b"not tensors"},
        "images_run": {"config.json": json.dumps(images, indent=1), "checkpoints/best.safetensors": checkpoint},
        "encoder_not_installed": {"config.json": json.dumps(missing, indent=1),
                                  "checkpoints/best.safetensors": checkpoint},
    }
    for folder, contents in folders.items():
        for name, content in contents.items():
            write(out / folder / name, content)


def models(run: Path, work: Path) -> None:
    from xrdcore.zoo import CARD, package_run

    out = HERE / "models"
    shutil.rmtree(out, ignore_errors=True)
    card = {"name": "corpus-tiny", "task": "space group (a 2-epoch test model)", "licence": "CC0",
            "training_data": {"dataset": "mp20-sample"}}
    package = package_run(run, work / "package", card=card, card_text="# corpus-tiny\n\nA test model.\n",
                          half=True).path
    (package / "config.json").write_text(json.dumps(stable_record(package / "config.json"), indent=1))
    base = {p.relative_to(package).as_posix(): p.read_bytes() for p in package.rglob("*") if p.is_file()}
    facts = json.loads(base[CARD])

    def variant(name: str, **changes: bytes | None) -> None:
        for path, content in {**base, **changes}.items():
            if content is not None:
                write(out / name / path, content)

    weights = bytearray(base["checkpoints/best.safetensors"])
    weights[-1] ^= 0xFF
    variant("good")
    variant("no_card", **{CARD: None})
    variant("card_not_json", **{CARD: base[CARD][:40]})
    variant("foreign_card", **{CARD: json.dumps({**facts, "format": "another-zoo/1"}).encode()})
    variant("card_field_wrong_kind", **{CARD: json.dumps({**facts, "size_bytes": "large"}).encode()})
    variant("card_metrics_wrong_kind", **{CARD: json.dumps({**facts, "metrics": {"test": {"top1": 0.9}}}).encode()})
    variant("weights_changed", **{"checkpoints/best.safetensors": bytes(weights)})
    variant("weights_missing", **{"checkpoints/best.safetensors": None})
    variant("config_not_a_run", **{"config.json": json.dumps({"format": "xrdcore-run/1", "config": []}).encode()})


def exports(cache: Path, work: Path) -> None:
    from xrdcore.data.export import MAGIC, export_cache

    out = HERE / "exports"
    shutil.rmtree(out, ignore_errors=True)
    os.environ["SOURCE_DATE_EPOCH"] = "0"  # the same bytes on every rebuild
    export_cache(cache, work / "good.xrdexport")
    data = (work / "good.xrdexport").read_bytes()
    length = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
    start, end = len(MAGIC) + 8, len(MAGIC) + 8 + length
    header = json.loads(data[start:end])

    def with_header(changed: dict) -> bytes:
        text = json.dumps(changed, separators=(",", ":")).encode()
        return MAGIC + len(text).to_bytes(8, "little") + text + data[end:]

    body = bytearray(data)
    body[end + 10] ^= 0x01
    entries = json.loads(json.dumps(header))
    entries["entries"][0]["space_group"] = 999
    split = json.loads(json.dumps(header))
    split["split"]["ids"]["train"] = split["split"]["ids"]["train"][1:]
    shape = json.loads(json.dumps(header))
    shape["arrays"]["counts"]["shape"] = [10**12]
    files = {
        "good.xrdexport": data,
        "empty.xrdexport": b"",
        "not_an_export.xrdexport": b"PK\x03\x04 a zip file, not an export",
        "truncated_before_header.xrdexport": data[:len(MAGIC) + 4],
        "header_longer_than_file.xrdexport": MAGIC + (10**9).to_bytes(8, "little") + data[start:start + 100],
        "header_not_json.xrdexport": MAGIC + (20).to_bytes(8, "little") + b"{not json at all ..." + data[end:],
        "array_damaged.xrdexport": bytes(body),
        "truncated_arrays.xrdexport": data[:end + 50],
        "entry_space_group_999.xrdexport": with_header(entries),
        "split_edited.xrdexport": with_header(split),
        "forged_array_shape.xrdexport": with_header(shape),
    }
    for name, content in files.items():
        write(out / name, content)


def main(kinds: list[str]) -> None:
    """Rewrite the folders of ``kinds`` (all when none is named): cifs, patterns, runs, models,
    exports. The last three need a model trained for a few seconds, whose bytes differ between
    machines: rebuild them only when they must change."""
    kinds = kinds or ["cifs", "patterns", "runs", "models", "exports"]
    if "cifs" in kinds:
        cifs()
    if "patterns" in kinds:
        patterns()
    if {"runs", "models", "exports"} & set(kinds):
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            run, cache = trained_run(work)
            if "runs" in kinds:
                runs(run)
            if "models" in kinds:
                models(run, work)
            if "exports" in kinds:
                exports(cache, work)
    print(f"corpus written under {HERE}: {', '.join(kinds)}")


if __name__ == "__main__":
    main(sys.argv[1:])
