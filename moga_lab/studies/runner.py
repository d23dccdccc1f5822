"""Studies as resumable units: the package's runner for work that outlasts one allocation or one machine.

A study is a YAML file of **units**. A unit is one command line of the package's own tools (``moga-fit``,
``moga-interaction``, ``moga-gradcam``, ``moga-sweep``, ...) with its own folder, an estimate of its minutes and the
units it needs first::

    name: compare
    out: runs/compare                      # unit folders: <out>/<unit name>
    units:
      - name: fit-{model}-s{seed}          # a matrix expands one entry into a unit per combination
        matrix: {model: [moganet_xtiny, convnext_atto], seed: [0, 1]}
        command: moga-fit --model {model} --seed {seed} --run-dir {dir} --epochs 3
        resume: {if_exists: last.ckpt, args: --resume}   # how a stopped unit continues (Lightning's last.ckpt)
        minutes: 40
      - name: curves-{model}-s{seed}
        matrix: {model: [moganet_xtiny, convnext_atto], seed: [0, 1]}
        after: [fit-{model}-s{seed}]
        command: moga-interaction --checkpoint {out}/fit-{model}-s{seed}/best.ckpt --out {dir}
        minutes: 25
    publish:                               # what `publish --to DIR` gathers: DIR/<table>
      compare/interaction_seeds.csv: {from: "curves-*", file: interaction.csv}
      compare/accuracy.csv: {from: "fit-*", file: results.yaml, columns: {test_top1: test/acc1}, percent: [test_top1]}
    reports:                               # then a report per published folder (moga_lab.studies.report)
      compare: {title: MogaNet vs ConvNeXt, reference: moganet_xtiny}
    claims: {registry: experiments/claims/paper.yaml, readme: [README.md]}   # declared claims, evaluated on them

``run`` skips finished units, resumes unfinished ones, and starts a unit only when the units it needs are
finished; ``--until HH:MM`` starts no unit whose estimate would end after the deadline (time-limited allocations);
``status`` lists every unit; ``export`` packs the folders of unfinished units (checkpoints included) into an
archive and ``import`` unpacks one, to move a study to another machine or survive a preempted node (``export
--lean`` packs finished units' results too, without the checkpoints no unfinished unit reads: a study that outlasts
its machines keeps that small archive beside its study file). A unit is
finished when the runner has written ``<dir>/unit.yaml`` after the command exited with status 0 (atomically: a
stopped runner never marks a unit finished; a SIGTERM or SIGINT is passed on to the command, and a unit so stopped
is not finished whatever its exit status); its log is ``<dir>/unit.log``. ``reset`` removes units' folders so
that the next run starts them clean.

Units run one after another in this process's machine (``inline``), as submitit jobs on this machine (``local``,
``concurrency`` at a time) or as Slurm jobs, one per unit (``slurm``; a later run watches a job Slurm still lists
instead of submitting its unit again). submitit carries each unit's command line to its process or node; the
ordering, the deadline and the archive are ours, because submitit has no notion of a study.

The runner lives in rooms that say what they hold: `moga_lab.studies.spec` (the study file), `moga_lab.studies.state`
(units' states, records, pace, reset), `moga_lab.studies.execute` (the scheduling loop and its executors),
`moga_lab.studies.archive` (export and import) and `moga_lab.studies.publish` (tables, claims and reports); this
module is their front door.
"""
from moga_lab.studies.archive import export_units, import_units
from moga_lab.studies.execute import EXECUTORS, run_study
from moga_lab.studies.publish import publish_study
from moga_lab.studies.spec import (COMMAND_FILE, DONE_FILE, LOG_FILE, SLURM_JOB_FILE, Study, StudyError, Unit,
                                   load_study)
from moga_lab.studies.state import paced_minutes, parse_deadline, reset_units, study_status, unit_state

__all__ = ['Unit', 'Study', 'StudyError', 'COMMAND_FILE', 'load_study', 'unit_state', 'study_status', 'run_study',
           'export_units', 'import_units', 'publish_study', 'parse_deadline', 'paced_minutes', 'reset_units',
           'EXECUTORS', 'DONE_FILE', 'LOG_FILE', 'SLURM_JOB_FILE']
