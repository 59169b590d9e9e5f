"""Structure data: where it comes from, what is wrong with it, its labels, duplicates and splits.

``sources`` (raw entries; ``cif`` parses CIF text, ``random_crystals`` asks pyxtal) →
``labels`` (``validation`` checks, spglib space group; ``report`` lists what was rejected and
why) → ``dedup`` (equivalent structures merged, split units) → ``splits`` (hashed JSON files).
``prepare`` runs the whole chain for a registered data set; ``parallel`` spreads the per-entry
work over processes without changing any result.
"""
