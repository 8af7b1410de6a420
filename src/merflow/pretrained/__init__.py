"""Pretrained networks ported from their original frameworks to PyTorch.

* :mod:`.tfbundle` reads TensorFlow checkpoints (tensor bundles) without TensorFlow;
* :mod:`.musicnn` is musicnn (Pons & Serra 2019) in PyTorch, proven equal to the original by
  ``tests/test_pretrained.py`` (docs/pretrained.md).

Importing this package imports neither torch nor librosa.
"""
