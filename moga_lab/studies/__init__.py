"""Studies: the paper's experiments at a scale a small machine allows, and what runs them.

- `.ablation` (``moga-ablate``): the paper's ablation grid; `.comparison` (``moga-compare``): models compared on the
  same images, trained here or named by the user.
- `.common`: one training unit (`train_variant`), interaction caches over models, seed tables, provenance.
- `.claims`: the claims registry, its tests and their family-wise adjustment (``moga-claims --registry``).
- `.runner` (``moga-study``): studies as resumable units (skip what is finished, resume what is not, a deadline,
  status, export/import of unfinished units); `.jobs` runs units through submitit (local processes or Slurm).
- the MLflow study store is `moga_lab.utils.tracking` (a single fit logs to it too; the analysis commands record to it
  without importing training).
"""
