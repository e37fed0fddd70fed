"""Exporters, one backend per file, behind one interface (``export/base.py``)."""
