"""Studies: the paper's experiments at a scale a small machine allows, and what runs them.

- `.ablation` (``moga-ablate``): the paper's ablation grid; `.comparison` (``moga-compare``): models compared on the
  same images, trained here or named by the user.
- `.common`: one training unit (`train_variant`), interaction caches over models, seed tables, provenance.
- `.registry`, `.claims`, `.findings`, `.power`: the claims registry, its tests with their family-wise adjustment,
  where the verdicts are written, and what a study can decide (``moga-claims``).
- `.runner` (``moga-study``): studies as resumable units (skip what is finished, resume what is not, a deadline,
  status, export/import of unfinished units), in rooms: `.spec` (the study file), `.state` (units' states and
  records), `.execute` (one scheduling loop: inline, submitit processes or Slurm), `.archive`, `.publish`;
  `.report` renders a published study. `.jobs` runs the ablation grid's trainings through submitit.
- the MLflow study store is `moga_lab.utils.tracking` (a single fit logs to it too; the analysis commands record to it
  without importing training).
"""
