"""Performance figures (``make bench``): a table printed at the end, no assertion on time."""
