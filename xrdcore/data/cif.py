"""CIF text → pymatgen structures, with one-line errors that say which file and why.

pymatgen hides the real reason for most failures in a warning and then raises "Invalid CIF
file with no structures!"; here the parser is asked to raise the real error, and the remaining
warnings are kept out of the user's console.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: keys of which a CIF block needs at least one to contain atoms
_ATOM_KEYS = ("_atom_site_fract_x", "_atom_site_cartn_x")


class UnreadableCIF(ValueError):
    """The text is not a CIF pymatgen can turn into a structure; the message says why."""


def parse_cif(text: str, source: str) -> list[Structure]:
    """Every structure in a CIF (one per data block with atoms), in file order.

    ``source`` names the file or row in error messages. The cell is the one the file gives
    (``primitive=False``): a conventional cell keeps its centring visible to spglib. A plain P1
    file is read by :func:`read_p1` (the same structure, ~40x faster); every other file by
    pymatgen's ``CifParser``.
    """
    if not text.strip():
        raise UnreadableCIF(f"{source}: the file is empty")
    fast = read_p1(text)
    if fast is not None:
        return [fast]
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser = CifParser.from_str(text)
        except Exception as exc:  # the CIF grammar itself; pymatgen raises many types
            raise UnreadableCIF(f"{source}: pymatgen could not parse the CIF text "
                                f"({_one_line(exc)})") from None
        blocks = [{key.lower() for key in block} for block in parser.as_dict().values()]
        if not blocks:
            raise UnreadableCIF(f"{source}: no CIF data block (no 'data_' line)")
        if not any(key in block for block in blocks for key in _ATOM_KEYS):
            raise UnreadableCIF(f"{source}: no atom sites (no _atom_site_fract_x or _atom_site_Cartn_x loop)")
        try:
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:
            raise UnreadableCIF(f"{source}: pymatgen could not build a structure "
                                f"({_one_line(exc)})") from None
    if not structures:
        raise UnreadableCIF(f"{source}: pymatgen found no structure in the file")
    dropped = [str(w.message) for w in caught if str(w.message).startswith("Missing elements")]
    if dropped:  # pymatgen leaves out sites with zero or negative occupancy and only warns
        raise UnreadableCIF(f"{source}: {dropped[0]} (sites with zero or negative occupancy?)")
    return structures


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {message}"


def read_structure(path: str | Path) -> Structure:
    """The one structure in a CIF file, checked for what would make its pattern meaningless
    (disordered sites are kept: the simulator handles partial occupancy)."""
    from xrdcore.data.sources import decode
    from xrdcore.data.validation import InvalidStructure, check_structure

    path = Path(path)
    if not path.is_file():
        raise UnreadableCIF(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}")
    try:
        text = decode(path.read_bytes())
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableCIF(f"{path}: cannot read the file ({_one_line(exc)})") from None
    structures = parse_cif(text, str(path))
    if len(structures) > 1:
        raise UnreadableCIF(f"{path}: holds {len(structures)} structures (data blocks); give one per file")
    try:
        check_structure(structures[0], disorder="keep")
    except InvalidStructure as exc:
        raise UnreadableCIF(f"{path}: {exc}") from None
    return structures[0]


# --- plain P1 files without pymatgen's CifParser ----------------------------------------------

#: a number as CIFs write it, with an optional standard uncertainty: 0.123, -1.5e-3, 0.62243(7)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:\(\d+\))?")
_ELEMENT = re.compile(r"[A-Z][a-z]?")
_SYMMETRY_TAGS = ("_symmetry_equiv_pos_as_xyz", "_symmetry_equiv_pos_as_xyz_",
                  "_space_group_symop_operation_xyz", "_space_group_symop_operation_xyz_")
_SITE_TAGS = ("_atom_site_label", "_atom_site_type_symbol", "_atom_site_fract_x", "_atom_site_fract_y",
              "_atom_site_fract_z")
_CELL_TAGS = tuple(f"_cell_{k}" for k in ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta",
                                          "angle_gamma"))
_OCCUPANCY = "_atom_site_occupancy"
_FORMULA_TAGS = ("_chemical_formula_sum", "_chemical_formula_structural")
#: tags that make pymatgen do more than read sites as they stand (symmetry from a symbol, oxidation
#: states, implicit hydrogens, magnetic CIF, Cartesian sites): such files take pymatgen's path
_OTHER_MEANING = ("_atom_type_oxidation_number", "_atom_site_attached_hydrogens", "_atom_site_cartn_x",
                  "_space_group_magn", "_atom_site_moment", "_space_group_symop_magn", "_cell_modulation",
                  "_cell_wave_vector")
#: pymatgen merges sites closer than this in every fractional coordinate (its site_tolerance)
_SITE_TOLERANCE = 1e-4


def read_p1(text: str) -> Structure | None:
    """The structure pymatgen's ``CifParser(...).parse_structures(primitive=False)`` gives for a
    plain P1 CIF, built without it; ``None`` for any other file (the caller then uses pymatgen).

    Plain means: one data block, the identity as its only symmetry operation, every site an
    element symbol at full occupancy with numeric fractional coordinates, no two sites closer
    than pymatgen's merge tolerance, no tag that changes how pymatgen reads sites. Nearly every
    computation-ready structure (CoRE MOF, Materials Project exports) is plain. The result is
    pymatgen's, site for site: lattice from ``Lattice.from_parameters``, coordinates snapped to 1/3
    and 2/3 within 1e-4 and wrapped into [0, 1) as pymatgen does, sites ordered by Pauling
    electronegativity and symbol with the file's order kept within an element (the order
    pymatgen's two sorts leave). The tests check that equality on real files.

    Why: pymatgen's parser compares every site with every other one in Python, ~80 ms for a
    400-atom MOF; this reads the same file in ~2 ms (gemmi's C++ CIF tokenizer and numpy).
    """
    try:
        import gemmi
    except ImportError:
        return None
    if not text.isascii() or len(re.findall(r"^\s*data_", text, flags=re.MULTILINE)) != 1:
        return None
    if any(not line.lstrip().startswith("#") for line in text.splitlines() if "#" in line):
        return None  # pymatgen strips "#..." even inside quoted values, which can shift its tokens
    try:
        document = gemmi.cif.read_string(text)
    except Exception:  # noqa: BLE001 - not strict CIF 1.1: pymatgen's tolerant reader decides
        return None
    if len(document) != 1 or "powder_pattern" in document[0].name:
        return None
    block = document[0]
    tags = [tag for item in block for tag in ([item.pair[0]] if item.pair else item.loop.tags if item.loop else [])]
    known = {t.lower() for t in (*_SITE_TAGS, *_CELL_TAGS, *_SYMMETRY_TAGS, *_FORMULA_TAGS, _OCCUPANCY)}
    if len({t.lower() for t in tags}) != len(tags) or any(t.lower() in known and t not in known for t in tags):
        return None  # repeated tags, or tags in a case that pymatgen (case-sensitive) would not see
    if any(t.lower().startswith(_OTHER_MEANING) for t in tags) or not all(t in tags for t in (*_SITE_TAGS, *_CELL_TAGS)):
        return None
    operations = next((t for t in _SYMMETRY_TAGS if t in tags), None)
    if operations is None or any(re.sub(r"\s", "", gemmi.cif.as_string(v)) != "x,y,z"
                                 for v in block.find_values(operations)):
        return None
    cell = [block.find_value(t) for t in _CELL_TAGS]
    site_tags = [*_SITE_TAGS, *([_OCCUPANCY] if _OCCUPANCY in tags else [])]
    table = block.find(site_tags)
    loop = block.find_loop(site_tags[0]).get_loop()
    if loop is None or len(table) != loop.length() or len(table) == 0 or not all(_NUMBER.fullmatch(v) for v in cell):
        return None
    rows = [list(row) for row in table]
    if not all(_NUMBER.fullmatch(v) for row in rows for v in row[2:]) or any(row[0][:1] in "'\"" for row in rows):
        return None
    if any(_float(row[5]) != 1.0 for row in rows if len(row) == 6):
        return None  # partial occupancy: pymatgen's disorder handling decides
    formula = next((gemmi.cif.as_string(block.find_value(t)) for t in _FORMULA_TAGS if t in tags), None)
    return _p1_structure([row[0] for row in rows], [row[1] for row in rows],
                         [[_float(v) for v in row[2:5]] for row in rows], [_float(v) for v in cell], formula)


def _float(text: str) -> float:
    """pymatgen's ``str2float`` of a number that matched :data:`_NUMBER`."""
    return float(text.split("(", 1)[0])


def _p1_structure(labels: list[str], symbols: list[str], coords: list[list[float]], cell: list[float],
                  formula: str | None) -> Structure | None:
    """The second half of :func:`read_p1`: the checks that need pymatgen's tables, then the structure."""
    import numpy as np
    from pymatgen.core import Composition, Lattice, Structure
    from pymatgen.core.periodic_table import Element
    from scipy.spatial import cKDTree

    if not all(_ELEMENT.fullmatch(s) and Element.is_valid_symbol(s) for s in symbols):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noble gases warn that they have no electronegativity
        electronegativity = {s: float(Element(s).X) for s in set(symbols)}
    if any(x != x for x in electronegativity.values()):
        return None  # NaN electronegativity: pymatgen's sort order is no total order there
    if formula:  # pymatgen's check_cif: elements of the stated formula missing from the sites
        try:
            if {str(e) for e in Composition(formula).remove_charges().elements} != set(symbols):
                return None  # parse_cif reports pymatgen's own message for these
        except Exception:  # noqa: BLE001 - an unreadable formula only makes pymatgen warn
            return None
    frac = np.array(coords, dtype=float)
    for ideal in (1 / 3, 2 / 3):  # pymatgen's _sanitize_data: finite-precision thirds made exact
        frac[np.abs(frac / ideal - 1) <= 1e-4] = float(str(ideal))
    frac = frac - np.floor(frac)
    lattice = Lattice.from_parameters(*cell)
    if min(lattice.d_hkl(h) for h in ((1, 0, 0), (0, 1, 0), (0, 0, 1))) < 0.01:
        return None  # pymatgen refuses thin cells with its own message
    if cKDTree(np.where(frac >= 1.0, 0.0, frac), boxsize=1.0).query_pairs(_SITE_TOLERANCE, p=np.inf):
        return None  # pymatgen merges such sites into one disordered site
    order = sorted(range(len(symbols)), key=lambda i: (electronegativity[symbols[i]], symbols[i]))
    return Structure(lattice, [symbols[i] for i in order], frac[order],
                     labels=[labels[i] for i in order])
