"""Customers: reading files (``files``), checking cells (``normalise``), importing them
(``importer``) and looking them up (``lookup``)."""
