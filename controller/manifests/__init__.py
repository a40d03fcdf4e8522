"""Loading the desired state: YAML with line numbers, envelopes, kinds' specs,
interpolation, references, overlays and the dependency graph.

``load_tree(root, registry)`` is the entry point; it returns a ``LoadResult``:
every environment that loaded (its resources and runbook runs), and the
problems of those that did not.
"""
