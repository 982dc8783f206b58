"""String catalogues, one module per language (``en``, ``zh``), each a mapping ``STRINGS`` of key -> text."""
