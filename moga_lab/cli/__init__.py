"""The command-line tools, one thin module each: parse the arguments, then call one library function.

``moga-fit`` (also ``python -m moga_lab.fit``), ``moga-validate``, ``moga-interaction``, ``moga-gradcam``,
``moga-sweep``, ``moga-export``, ``moga-ablate``, ``moga-compare``, ``moga-claims`` and ``moga-study`` (the
resumable runner); each has ``--help``. Shared argument types and model options live in `.common`.
"""
