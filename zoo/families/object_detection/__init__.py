"""Object detection (COCO boxes): coco128 data, the ``onnx-detector`` artifact, COCO mAP, and its techniques.

Everything the family knows lives in this folder: ``family.py`` (the Family the stages ask), ``techniques.py``,
``usage/`` and ``space/``.
"""
