"""The fixed tensor layout of one crystal (paper §2), declared once.

Every shape the representation, the network and the methods agree on comes from here, so a
change of layout is one edit. One crystal is:

* coordinates + lattice: ``N_ROWS x COORD_CHANNELS``; rows ``0..n-1`` hold the fractional
  coordinates of the ``n <= MAX_SITES`` atoms, zero rows follow, ``PADDING_ROW`` is always zero
  and ``LATTICE_ROWS`` hold the lattice vectors a, b, c (Å);
* elements: ``N_ROWS x ELEMENT_CHANNELS``, the one-hot atomic number (Z = 1..``MAX_Z``) next to
  ``N_PROPERTIES`` elemental properties, zero on rows without an atom;
* space group: ``N_SYMOPS x AFFINE_DIM x AFFINE_DIM`` affine matrices of its operations,
  zero-padded (Fm-3m and Fd-3m have 192 operations, the most of any group).

No imports: every module, torch-free ones included, can depend on it.
"""

N_ROWS = 64
MAX_SITES = 60
PADDING_ROW = 60
LATTICE_ROWS = slice(PADDING_ROW + 1, N_ROWS)
COORD_CHANNELS = 3

MAX_Z = 103
N_PROPERTIES = 22
ELEMENT_CHANNELS = MAX_Z + N_PROPERTIES

N_SYMOPS = 192
AFFINE_DIM = 4
