"""xrd-example: the template xrdcore plugin. Copy it, rename it, replace the components.

Nothing is imported here on purpose: ``xrdcore`` imports the entry-point module
(:mod:`xrd_example.plugin`) on every command, and the encoder only when it is created.
"""
