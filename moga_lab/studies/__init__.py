"""Studies: the paper's experiments at a scale a small machine allows, and what runs them.

- `.generate` (``moga-ablate``, ``moga-compare``): study files for the paper's ablation grid and for models compared on
  the same images; the runner below trains, analyses and publishes them. `.model_curves`: interaction curves of
  trained models on shared images (one way: each unit of a study file calls it).
- `.registry`, `.claims`, `.findings`, `.power`: the claims registry, its tests with their family-wise adjustment,
  where the verdicts are written, and what a study can decide (``moga-claims``).
- `.runner` (``moga-study``): studies as resumable units (skip what is finished, resume what is not, a deadline,
  status, export/import of unfinished units), in rooms: `.spec` (the study file), `.state` (units' states and
  records), `.execute` (one scheduling loop: inline, submitit processes or Slurm), `.archive`, `.publish`;
  `.report` renders a published study.
- the MLflow study store is `moga_lab.utils.tracking` (a single fit logs to it too; the analysis commands record to it
  without importing training).
"""
