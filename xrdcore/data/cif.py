"""CIF text → pymatgen structures, with one-line errors that say which file and why.

pymatgen hides the real reason for most failures in a warning and then raises "Invalid CIF
file with no structures!"; here the parser is asked to raise the real error, and the remaining
warnings are kept out of the user's console.
"""

from __future__ import annotations

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
    (``primitive=False``): a conventional cell keeps its centring visible to spglib.
    """
    from pymatgen.io.cif import CifParser

    if not text.strip():
        raise UnreadableCIF(f"{source}: the file is empty")
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
