"""Table statements written once for both stores, one module per table.

Each module holds a class of the methods whose SQL the two engines share but for the
placeholder and a few fragments (``dialect.py``); ``sqlite/`` and ``postgresql/`` mix it
into their own class for the table and keep there only what really differs (upserts that
return ids, arrays instead of ``IN`` lists, COPY, locks, streaming, units of work).
Delivery lookups, the first pair written once, are in ``store/lookups.py``.
"""
