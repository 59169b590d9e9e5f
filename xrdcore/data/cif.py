"""CIF text → pymatgen structures, with one-line errors that say which file and why.

pymatgen hides the real reason for most failures in a warning and then raises "Invalid CIF
file with no structures!"; here the parser is asked to raise the real error, and the remaining
warnings are kept out of the user's console.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
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
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark, as Windows editors write one
    if not text.strip():
        raise UnreadableCIF(f"{source}: the file is empty")
    fast = read_p1(text)
    if fast is not None:
        return [fast]
    from pymatgen.io.cif import CifParser

    strict = _grammar_problem(text)
    if strict is not None and "duplicate tag" in strict:  # pymatgen keeps one of the values, silently
        raise UnreadableCIF(f"{source}: {strict}; a tag may be given once per block")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser = CifParser.from_str(text)
        except Exception as exc:  # the CIF grammar itself; pymatgen raises many types
            reason = strict or _one_line(exc)  # gemmi's message names the line
            raise UnreadableCIF(f"{source}: pymatgen could not parse the CIF text ({reason})") from None
        blocks = [{key.lower() for key in block} for block in parser.as_dict().values()]
        if not blocks:
            raise UnreadableCIF(f"{source}: no CIF data block (no 'data_' line)")
        if not any(key in block for block in blocks for key in _ATOM_KEYS):
            raise UnreadableCIF(f"{source}: no atom sites (no _atom_site_fract_x or _atom_site_Cartn_x loop)")
        declared = _check_blocks(parser, source)
        structures = _build(parser, source)
        if _check_applied(parser, declared):  # operations put in where pymatgen missed a symbol: again
            structures = _build(parser, source)
            _check_applied(parser, declared, put_in=False)
    if not structures:
        raise UnreadableCIF(f"{source}: pymatgen found no structure in the file")
    dropped = [str(w.message) for w in caught if str(w.message).startswith("Missing elements")]
    if dropped:  # pymatgen leaves out sites with zero or negative occupancy and only warns
        raise UnreadableCIF(f"{source}: {dropped[0]} (sites with zero or negative occupancy?)")
    return structures


def _build(parser, source: str) -> list[Structure]:
    try:
        return parser.parse_structures(primitive=False, on_error="raise")
    except Exception as exc:
        raise UnreadableCIF(f"{source}: pymatgen could not build a structure ({_one_line(exc)})") from None


def _grammar_problem(text: str) -> str | None:
    """What gemmi's strict CIF 1.1 parser finds wrong with the text, as "line N: ...", or None."""
    try:
        import gemmi

        gemmi.cif.read_string(text)
    except ImportError:
        return None
    except Exception as exc:  # noqa: BLE001 - gemmi raises ValueError or RuntimeError with its reason
        message = " ".join(str(exc).split())
        match = re.match(r"string:(\d+)(?::\d+\(\d+\))?(?: in (\S+))?: (.*)", message)
        if match is None:
            return message[:200]
        block = f" ({match.group(2)})" if match.group(2) else ""
        return f"line {match.group(1)}{block}: {match.group(3)[:200]}"
    return None


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
        raise UnreadableCIF(f"{path}: {exc}{_site_labels(exc.sites, structures[0])}") from None
    return structures[0]


def _site_labels(sites: tuple[int, int] | None, structure: Structure) -> str:
    """The file's labels of the two sites an overlap names by index (``InvalidStructure.sites``): the
    indices count sites after symmetry expansion, the labels are what the file's author wrote."""
    if sites is None:
        return ""
    try:
        labels = [structure[i].label for i in sites]
    except AttributeError:  # a pymatgen without site labels
        return ""
    return f"; atom sites {labels[0]} and {labels[1]} of the file" if all(labels) else ""


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
    if not _forms_cell(*(_float(v) for v in cell)):
        return None  # check_block says what is wrong with the cell
    declared = [gemmi.cif.as_string(block.find_value(t)).replace(" ", "").upper() for t in tags
                if t.lower() in (*_HM_TAGS, *_HALL_TAGS, *_IT_NUMBER_TAGS)]
    if any(value not in ("P1", "1", "?", ".", "") for value in declared):
        return None  # a symbol other than P1 beside the identity alone: check_block refuses the file
    formula = next((gemmi.cif.as_string(block.find_value(t)) for t in _FORMULA_TAGS if t in tags), None)
    return _p1_structure([row[0] for row in rows], [row[1] for row in rows],
                         [[_float(v) for v in row[2:5]] for row in rows], [_float(v) for v in cell], formula)


def _forms_cell(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> bool:
    """Positive lengths, and angles between 0 and 180 degrees that form a cell: (V / abc)²
    (International Tables for Crystallography Vol. B, Table 1.1.3.1) positive."""
    if not (min(a, b, c) > 0 and all(0 < x < 180 for x in (alpha, beta, gamma))):
        return False
    cosines = [math.cos(math.radians(x)) for x in (alpha, beta, gamma)]
    return 1 - sum(x * x for x in cosines) + 2 * math.prod(cosines) > 1e-6


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


# --- what a CIF states, checked before pymatgen builds a structure from it -------------------------
#
# pymatgen builds a structure from almost anything: an unknown space-group symbol becomes P1 (with a
# warning nobody sees), a negative cell length is taken by its absolute value, an operation it cannot
# read is skipped. Each would give a wrong pattern and a wrong label without a word, so every block
# with atoms is checked here first: its cell, its occupancies, and its symmetry (symbols, numbers and
# operations against spglib's tables, against each other, against the cell, and against what pymatgen
# is about to apply).

_HM_TAGS = ("_symmetry_space_group_name_h-m", "_symmetry_space_group_name_h_m", "_space_group_name_h-m_alt",
            "_space_group_name_h-m", "_space_group.name_h-m_alt", "_symmetry.space_group_name_h-m")
_HALL_TAGS = ("_symmetry_space_group_name_hall", "_space_group_name_hall", "_space_group.name_hall",
              "_symmetry.space_group_name_hall")
_IT_NUMBER_TAGS = ("_symmetry_int_tables_number", "_space_group_it_number", "_space_group.it_number",
                   "_symmetry.int_tables_number")
_OPERATION_TAGS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz",
                   "_space_group_symop.operation_xyz", "_symmetry_equiv.pos_as_xyz")
_CELL_PARAMETERS = {name: (f"_cell_{kind}_{name}", f"_cell.{kind}_{name}") for kind, names in
                    (("length", ("a", "b", "c")), ("angle", ("alpha", "beta", "gamma"))) for name in names}
#: a space group has at most 192 operations in a conventional cell (Fm-3m: 48 rotations x 4 centrings)
MAX_OPERATIONS = 192
#: operations that agree within this (fractions of the cell) are one; products must land this close
_TRANSLATION_TOLERANCE = 2e-3
#: relative change of the metric tensor an operation may make and still fit the cell (rounded cell
#: parameters of a real file are well within it; cubic operations on a cell 2% off cubic are not)
_METRIC_TOLERANCE = 1e-2
#: spglib's tolerance (Å) when it names the type of a set of operations (decimal fractions as 0.333)
_TYPE_SYMPREC = 1e-2


@dataclass
class _Declared:
    """What one data block says about its symmetry, once checked: its own operations (rotations,
    translations) or None, the symbols and numbers that name a known type, and its lattice."""

    data: dict
    where: str
    operations: tuple | None
    known: list
    lattice: object


def _check_blocks(parser, source: str) -> list[_Declared]:
    """:func:`check_block` on every data block with atoms (pymatgen's own blocks, which it will parse)."""
    blocks = getattr(getattr(parser, "_cif", None), "data", None)
    if not isinstance(blocks, dict):  # another pymatgen: check what the file says, not what it applies
        for block in parser.as_dict().values():
            if any(key.lower() in _ATOM_KEYS for key in block):
                check_block(block, source)
        return []
    atoms = [(name, block) for name, block in blocks.items() if any(key.lower() in _ATOM_KEYS for key in block.data)]
    return [check_block(block.data, source if len(atoms) == 1 else f"{source} (block data_{name})")
            for name, block in atoms]


def check_block(data: dict, where: str) -> _Declared:
    """Refuse a CIF data block (a mapping of tags to a value or a list of values) whose cell,
    occupancies or symmetry cannot be right, with one line naming the file, the tags and the values;
    return what it declares, for :func:`_check_applied` once pymatgen has read it."""
    fields: dict[str, tuple[str, list[str]]] = {}  # lower-case tag → (the tag as written, its values)
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        fields.setdefault(key.lower().rstrip("_"), (key, [str(v).strip() for v in values]))
    lattice = _check_cell(fields, where)
    _check_occupancies(fields, where)
    operations, known = _check_symmetry(fields, where, lattice)
    return _Declared(data, where, operations, known, lattice)


def _check_applied(parser, declared: list[_Declared], put_in: bool = True) -> bool:
    """The operations pymatgen applied to each block must be the file's own, or those of the type its
    symbols name (P1 if none). Where pymatgen did not know a symbol that names one setting in spglib's
    database (a Hall symbol, capitals, an origin suffix), that setting's operations are put into the
    block and True returned: parse again. Anything else that differs is refused."""
    import numpy as np

    if getattr(parser, "feature_flags", {}).get("magcif") or not declared:
        return False
    blocks = list(getattr(getattr(parser, "_cif", None), "data", {}).values())
    changed = False
    for block in declared:
        last = blocks and blocks[-1].data is block.data  # pymatgen keeps the last block's operations
        try:
            used = parser.symmetry_operations if last else parser.get_symops(
                next(b for b in blocks if b.data is block.data))
        except Exception:  # noqa: BLE001 - nothing to compare with
            continue
        used_ops = _as_arrays(used)
        if used_ops is None:
            continue
        where, known = block.where, block.known
        if block.operations is not None:
            if _same_operations(block.operations, used_ops):
                continue
            if not put_in:
                raise UnreadableCIF(f"{where}: pymatgen did not apply the file's {len(block.operations[0])} symmetry "
                                    f"operations ({len(used_ops[0])} others instead)")
            # a loop under a tag pymatgen does not read (another case, the mmCIF dot form): the same
            # operations under the tag it reads
            block.data["_symmetry_equiv_pos_as_xyz"] = [_write(block.operations, i)
                                                        for i in range(len(block.operations[0]))]
            changed = True
            continue
        what = f"the {len(used_ops[0])} operations of {known[0][1]!r}" if known else "the operations pymatgen applies"
        number = _type_of(used_ops, block.lattice, where, what)
        expected = known[0][2] if known else 1
        if number == expected:
            continue
        setting = _setting(known) if put_in else None
        if setting is not None:
            import spglib

            database = spglib.get_symmetry_from_database(setting)
            generated = (database["rotations"], np.mod(database["translations"], 1.0))
            block.data["_symmetry_equiv_pos_as_xyz"] = [_write(generated, i) for i in range(len(generated[0]))]
            _type_of(generated, block.lattice, where, f"the {len(generated[0])} operations of {known[0][1]!r}")
            changed = True
            continue
        said = f"{known[0][0]} {known[0][1]!r} (No. {expected})" if known else "no symmetry (P1)"
        raise UnreadableCIF(f"{where}: the file says {said} but pymatgen would apply the symmetry of No. {number} "
                            f"({_symbol(number)}); give the symmetry operations in the file")
    return changed


def _values(fields: dict, tag: str) -> list[str] | None:
    return fields[tag][1] if tag in fields else None


def _tag(fields: dict, tag: str) -> str:
    """The tag as the file writes it (files disagree on case), for messages."""
    return fields[tag][0] if tag in fields else tag


def _known(values: list[str] | None) -> list[str]:
    """The values that say something: CIF's '?' (unknown) and '.' (inapplicable) do not."""
    return [_unquote(v) for v in values or () if _unquote(v) not in ("", "?", ".")]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1].strip()
    return value


def _number(value: str) -> float | None:
    """A CIF number without its standard uncertainty, or None if it is none."""
    try:
        return float(re.sub(r"\(\d*\)$", "", value.strip()))
    except ValueError:
        return None


def _first(fields: dict, tags: tuple[str, ...]) -> tuple[str, str] | None:
    """(tag as written, value) of the first of ``tags`` that the block gives a value."""
    for tag in tags:
        values = _known(_values(fields, tag))
        if values:
            return _tag(fields, tag), values[0]
    return None


def _check_cell(fields: dict, where: str):
    """Positive lengths and angles that form a cell; the lattice (numpy rows) when all six are given.
    Missing or non-numeric values are pymatgen's to report, non-finite ones the structure checks'."""
    import numpy as np

    cell = {}
    for name, tags in _CELL_PARAMETERS.items():
        found = _first(fields, tags)
        number = None if found is None else _number(found[1])
        if number is None or not math.isfinite(number):
            continue
        cell[name] = number
        if name in ("a", "b", "c") and number <= 0:
            raise UnreadableCIF(f"{where}: {found[0]} = {found[1]}: a cell length must be a positive number of Å")
        if name in ("alpha", "beta", "gamma") and not 0 < number < 180:
            raise UnreadableCIF(f"{where}: {found[0]} = {found[1]}: a cell angle must lie between 0 and 180 degrees")
    if len(cell) < 6:
        return None
    if not _forms_cell(*(cell[n] for n in _CELL_PARAMETERS)):
        raise UnreadableCIF(f"{where}: the cell angles alpha = {cell['alpha']:g}, beta = {cell['beta']:g}, "
                            f"gamma = {cell['gamma']:g} degrees form no cell (each must be less than the sum of "
                            "the other two, and all three less than 360 together)")
    from pymatgen.core import Lattice

    return np.asarray(Lattice.from_parameters(*(cell[n] for n in _CELL_PARAMETERS)).matrix, dtype=float)


def _check_occupancies(fields: dict, where: str) -> None:
    """Occupancies above 1, named by their site (pymatgen refuses them without saying which);
    zero or negative ones are refused after parsing, naming their element."""
    labels = _values(fields, "_atom_site_label") or []
    for i, value in enumerate(_values(fields, "_atom_site_occupancy") or []):
        number = _number(_unquote(value))
        if number is not None and math.isfinite(number) and number > 1:
            site = f"atom site {labels[i]}" if i < len(labels) else f"atom site {i + 1}"
            raise UnreadableCIF(f"{where}: {site} has {_tag(fields, '_atom_site_occupancy')} {value}, above 1")


def _check_symmetry(fields: dict, where: str, lattice) -> tuple[tuple | None, list]:
    """Symbols, IT numbers and operations must name one space-group type that spglib knows and fit
    the cell; see the comment above :data:`_HM_TAGS`. Returns the file's operations (or None) and the
    (tag, value, number) of every symbol and number that names a known type."""
    declared = []  # (tag, value, type number or None when the symbol is unknown)
    for tags, resolve in ((_HM_TAGS, _hm_number), (_HALL_TAGS, _hall_number)):
        for tag in tags:
            declared += [(_tag(fields, tag), value, resolve(value)) for value in _known(_values(fields, tag))[:1]]
    for tag in _IT_NUMBER_TAGS:
        for value in _known(_values(fields, tag))[:1]:
            number = _number(value)  # '225', or '225.0' as some programs write it
            if number is None or not number.is_integer() or not 1 <= number <= 230:
                raise UnreadableCIF(f"{where}: {_tag(fields, tag)} {value!r} is not a space-group number (1-230)")
            declared.append((_tag(fields, tag), value, int(number)))
    loop = next((_values(fields, t) for t in _OPERATION_TAGS if _known(_values(fields, t))), None)
    ops = None
    if loop is not None:
        ops = _operations([_unquote(v) for v in loop if _unquote(v) not in ("?", ".")], where)
    for tag, value, number in declared:
        if number is None and (ops is None or not _looks_like_symbol(value, tag.lower().rstrip("_") in _HALL_TAGS)):
            more = "" if ops is None else " (it is not written like one either)"
            raise UnreadableCIF(
                f"{where}: {tag} {value!r} is not a space-group symbol spglib knows{more}, and the file has "
                f"{'no symmetry operations' if ops is None else 'symmetry operations that cannot vouch for it'}"
                ": its symmetry cannot be known")
    known = [(tag, value, number) for tag, value, number in declared if number is not None]
    for tag, value, number in known[1:]:
        if number != known[0][2]:
            raise UnreadableCIF(f"{where}: {known[0][0]} {known[0][1]!r} (No. {known[0][2]}) and {tag} {value!r} "
                                f"(No. {number}) name different space groups")
    if ops is not None:
        number = _type_of(ops, lattice, where, "the file's symmetry operations")
        if known and number != known[0][2]:
            raise UnreadableCIF(f"{where}: {known[0][0]} {known[0][1]!r} is space group No. {known[0][2]} "
                                f"({_symbol(known[0][2])}) but the file's {len(ops[0])} symmetry operations "
                                f"form No. {number} ({_symbol(number)})")
    return ops, known


def _symbol(number: int) -> str:
    from xrdcore.crystal.spacegroups import space_group

    return space_group(number).symbol


def _hm_number(value: str) -> int | None:
    """The type number of a Hermann-Mauguin symbol of any setting spglib lists, or None. Accepts
    spaces, '_' or not, a setting suffix (':2', ':H', ICSD's ' S', ' Z', ' H', ' R') and capitals
    (CoRE MOF writes 'P63/MMC': uppercase letters never tell two symbols apart)."""
    from xrdcore.crystal.spacegroups import N_SPACE_GROUPS, capital_symbols

    text = value.strip()
    if not text or text.isdigit() or len(text) > 40:
        return None
    for candidate in (text, re.sub(r"\s*:\s*\S+$", "", text), re.sub(r"\s+[SZHRszhr]$", "", text)):
        if candidate.strip().isdecimal():  # a number left by the suffix ('14:2'), taken as the type
            if 1 <= int(candidate) <= N_SPACE_GROUPS:
                return int(candidate)
            continue
        number = capital_symbols()[0].get(candidate.replace(" ", "").upper())
        if number is not None:
            return number
    return None


def _hall_number(value: str) -> int | None:
    """The type number of a Hall symbol spglib lists (any of its 530 settings), or None."""
    from xrdcore.crystal.spacegroups import capital_symbols

    setting = capital_symbols()[1].get(" ".join(value.split()).upper())  # spaces separate: P 3 2 is not P 32
    return None if setting is None else setting[0]


def _setting(known: list) -> int | None:
    """spglib's Hall number of the one setting a block's symbols name, or None: a Hall symbol names
    one; a Hermann-Mauguin symbol one where its suffix (':2', ICSD's ' Z') or the symbol itself leaves
    no choice of origin (a bare 'Fd-3m' does; monoclinic short symbols and 'R' groups take the
    standard setting, which the cell check then holds to the cell)."""
    from xrdcore.crystal.spacegroups import capital_symbols, hm_settings, standard_hall_numbers

    for tag, value, number in known:
        name = tag.lower().rstrip("_")
        if name in _HALL_TAGS:
            return capital_symbols()[1][" ".join(value.split()).upper()][1]
        if name not in _HM_TAGS:
            continue
        match = re.fullmatch(r"(.*?)(?:\s*:\s*(\S+)|\s+([SZHR]))?", value.strip())
        base, suffix = match.group(1), match.group(2) or {"S": "1", "Z": "2"}.get(match.group(3), match.group(3))
        candidates = hm_settings().get(base.replace(" ", "").replace("_", "").upper(), [])
        if suffix and any(choice for _, choice in candidates):  # a suffix where there is no choice is moot
            candidates = [(hall, choice) for hall, choice in candidates if choice.upper() == suffix.upper()]
        elif {"1", "2"} <= {choice for _, choice in candidates}:
            return None  # two origins: the positions mean different things in each
        halls = [hall for hall, _ in candidates]
        if len(halls) == 1:
            return halls[0]
        standard = standard_hall_numbers()[number - 1]
        return standard if standard in halls else None
    return None


def _looks_like_symbol(value: str, hall: bool) -> bool:
    """Written like a space-group symbol (a lattice letter, then axes); operations then define it."""
    if hall:
        return re.fullmatch(r"-?[PABCIFR]\s+[-0-9xyzabcnuvwdXYZABCNUVWD'\"*=^ ()+/,.]+", value) is not None
    return re.fullmatch(r"[PABCIFR]\s*[-0-9abcdemnABCDEMN/_ ]*(:\s*\S+)?", value) is not None


_TERM = re.compile(r"([+-]?)(?:(\d+(?:\.\d*)?|\.\d+)(?:/(\d+(?:\.\d*)?))?\*?)?([xyz])?")


def parse_operation(text: str) -> tuple[list[list[int]], list[float]]:
    """A symmetry operation as CIFs write it ('-x+1/2, y, z+0.5', 'x-y,x,z') as its rotation
    (integer, determinant ±1) and translation; a ValueError saying what is wrong otherwise."""
    import numpy as np

    parts = re.sub(r"\s", "", text).lower().split(",")
    if len(parts) != 3:
        raise ValueError(f"{len(parts)} comma-separated parts, not 3 (x, y, z)")
    rotation, translation = np.zeros((3, 3)), np.zeros(3)
    for row, part in enumerate(parts):
        if not part:
            raise ValueError(f"part {row + 1} is empty")
        position = 0
        while position < len(part):
            match = _TERM.match(part, position)
            if match is None or match.end() == position or (position and not match.group(1)) \
                    or not (match.group(2) or match.group(4)):
                raise ValueError(f"cannot read {part[position:]!r}")
            value = float(match.group(2)) if match.group(2) else 1.0
            if match.group(3) is not None:
                if float(match.group(3)) == 0:
                    raise ValueError(f"division by zero in {part!r}")
                value /= float(match.group(3))
            value *= -1 if match.group(1) == "-" else 1
            if match.group(4):
                if value != round(value) or abs(value) > 2:
                    raise ValueError(f"coefficient {value:g} of {match.group(4)} is not a small integer")
                rotation[row, "xyz".index(match.group(4))] += value
            else:
                translation[row] += value
            position = match.end()
    if round(abs(np.linalg.det(rotation))) != 1 or abs(abs(np.linalg.det(rotation)) - 1) > 1e-9:
        raise ValueError(f"its rotation part has determinant {np.linalg.det(rotation):g}, not ±1")
    return rotation.astype(int).tolist(), translation.tolist()


def _operations(texts: list[str], where: str):
    """The file's operations as (rotations, translations in [0, 1)), distinct, checked to form a group."""
    import numpy as np

    if len(texts) > 4 * MAX_OPERATIONS:
        raise UnreadableCIF(f"{where}: {len(texts)} symmetry operations; a space group has at most "
                            f"{MAX_OPERATIONS} in a conventional cell")
    rotations, translations = [], []
    for i, text in enumerate(texts, 1):
        try:
            rotation, translation = parse_operation(text)
        except ValueError as exc:
            raise UnreadableCIF(f"{where}: symmetry operation {i} {text!r} is not an operation like "
                                f"'-x, y+1/2, -z+1/2' ({exc})") from None
        rotations.append(rotation)
        translations.append(translation)
    ops = _distinct(np.array(rotations, dtype=int), np.mod(np.array(translations, dtype=float), 1.0))
    if len(ops[0]) > MAX_OPERATIONS:
        raise UnreadableCIF(f"{where}: {len(ops[0])} distinct symmetry operations; a space group has at most "
                            f"{MAX_OPERATIONS} in a conventional cell")
    missing = _not_closed(*ops)
    if missing is not None:
        (i, j) = missing
        raise UnreadableCIF(f"{where}: the symmetry operations do not form a group: the product of "
                            f"{_write(ops, i)!r} and {_write(ops, j)!r} is not among them")
    return ops


def _write(ops, i: int) -> str:
    """Operation ``i`` as an x,y,z triplet (for messages)."""
    from fractions import Fraction

    rows = []
    for row, t in zip(ops[0][i], ops[1][i]):
        terms = "".join(f"{'+' if c > 0 else '-'}{'' if abs(c) == 1 else abs(c)}{v}" for c, v in zip(row, "xyz") if c)
        shift = Fraction(float(t)).limit_denominator(48)
        rows.append((terms + (f"+{shift}" if shift else "")).lstrip("+"))
    return ",".join(rows)


def _periodic_distance(a, b):
    """Largest per-axis distance between fractional translations, modulo whole cells (broadcasts)."""
    import numpy as np

    d = np.abs(a - b) % 1.0
    return np.minimum(d, 1 - d).max(axis=-1)


def _matches(rotations, translations, other_rotations, other_translations):
    """(n, m) boolean: operation i of the first set equals operation j of the second."""
    from xrdcore.crystal.spacegroups import matrix_codes

    same = matrix_codes(rotations)[:, None] == matrix_codes(other_rotations)[None, :]
    return same & (_periodic_distance(translations[:, None, :], other_translations[None, :, :])
                   < _TRANSLATION_TOLERANCE)


def _distinct(rotations, translations):
    """The operations without repeats (the first of each)."""
    import numpy as np

    equal = _matches(rotations, translations, rotations, translations)
    keep = ~np.tril(equal, k=-1).any(axis=1)
    return rotations[keep], translations[keep]


def _not_closed(rotations, translations) -> tuple[int, int] | None:
    """A pair (i, j) whose product is not in the set, or None for a group. Each product is compared
    only with the operations of its rotation (a few centrings): n² x 3 x a few numbers, not n³."""
    import numpy as np

    from xrdcore.crystal.spacegroups import MATRIX_CODE_SPAN, matrix_codes

    n = len(rotations)
    products = np.einsum("iab,jbc->ijac", rotations, rotations).reshape(n * n, 3, 3)
    shifts = (np.einsum("iab,jb->ija", rotations, translations) + translations[:, None, :]).reshape(n * n, 3)
    codes = matrix_codes(rotations)
    order = np.argsort(codes, kind="stable")
    # a product with an entry beyond the codes' span (its code would be clipped) gets -1, which no code equals
    wanted = np.where(np.abs(products).max((1, 2)) <= MATRIX_CODE_SPAN, matrix_codes(products), -1)
    first = np.searchsorted(codes[order], wanted, "left")
    stop = np.searchsorted(codes[order], wanted, "right")
    found = np.zeros(n * n, dtype=bool)
    for k in range(int((stop - first).max(initial=0))):
        candidate = order[np.minimum(first + k, n - 1)]
        found |= (first + k < stop) & (_periodic_distance(shifts, translations[candidate]) < _TRANSLATION_TOLERANCE)
    if found.all():
        return None
    return divmod(int(np.argmin(found)), n)


def _as_arrays(symmops):
    """pymatgen SymmOps as (integer rotations, translations in [0, 1)), distinct; None if not integral."""
    import numpy as np

    rotations = np.array([op.rotation_matrix for op in symmops], dtype=float)
    if not len(rotations) or not np.allclose(rotations, np.round(rotations), atol=1e-6):
        return None
    translations = np.mod(np.array([op.translation_vector for op in symmops], dtype=float), 1.0)
    return _distinct(np.round(rotations).astype(int), translations)


def _same_operations(a, b) -> bool:
    return len(a[0]) == len(b[0]) and bool(_matches(*a, *b).any(axis=1).all())


def _type_of(ops, lattice, where: str, what: str) -> int:
    """The space-group type (spglib) of a group of operations, after checking that each fits the cell."""
    import warnings as _warnings

    import numpy as np
    import spglib

    rotations, translations = ops
    if lattice is not None:
        metric = lattice @ lattice.T
        scale = float(np.max(np.abs(metric)))
        for k, rotation in enumerate(rotations):
            if np.max(np.abs(rotation.T @ metric @ rotation - metric)) > _METRIC_TOLERANCE * scale:
                a, b, c = np.sqrt(np.diag(metric))
                raise UnreadableCIF(f"{where}: {what} do not fit the cell: {_write(ops, k)!r} does not map a "
                                    f"cell of {a:.4g} x {b:.4g} x {c:.4g} Å with these angles onto itself")
    # the type does not depend on the cell's size: scaled to a volume of 1000 Å³, spglib's tolerances
    # mean the same for a 0.3 Å cell as for a 30 Å one
    basis = np.eye(3) if lattice is None or not abs(np.linalg.det(lattice)) > 0 else (
        10 * lattice / abs(np.linalg.det(lattice)) ** (1 / 3))
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        kind = spglib.get_spacegroup_type_from_symmetry(
            np.ascontiguousarray(rotations, dtype="intc"), np.ascontiguousarray(translations, dtype=float),
            lattice=np.ascontiguousarray(basis), symprec=_TYPE_SYMPREC)
    if kind is None:
        raise UnreadableCIF(f"{where}: {what} form no space group spglib knows")
    return int(kind.number)
