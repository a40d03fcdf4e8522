"""Loading the desired state: YAML with line numbers, envelopes, kinds' specs,
interpolation, references, overlays and the dependency graph.

``load_tree(root)`` is the entry point; it returns every environment's
resources or raises ``ManifestError`` with every problem found.
"""
