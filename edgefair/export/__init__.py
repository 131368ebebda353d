"""Pruning, quantisation, ONNX and TFLite conversion, artefact manifests (``bench export``).

Public API::

    from edgefair.export.matrix import export_matrix      # the target × sparsity matrix
    from edgefair.export.importer import import_artifact  # a model made elsewhere
"""
