"""Soak tests (``make soak``): crashes and faults at scale; never collected by ``make test``."""
