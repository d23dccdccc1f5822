"""Analysis on any classifier nn.Module: multi-order interactions (Deng et al.) and Grad-CAM (captum).
Nothing here imports moga_lab.training.

The rooms: `.game` (the image game), `.coalitions` (players, pairs, contexts), `.interaction` and `.strength` (the
estimators on any value function), `.shared` and `.planner` (the shared-evaluation design and its planner),
`.estimate` (`InteractionSettings`, `interaction_strength`), `.tables` (reading a per-image table), `.curves` (curves
and middle shares), `.seeds`, `.uncertainty`, `.power`, `.multiplicity` (statistics across seeds, images and claims),
`.gradcam`, `.plots`, and `.known_games` / `.known_studies` (answers known in advance, for checking). The names most
analyses start from load from here on first use.
"""
import importlib

__all__ = ['InteractionSettings', 'interaction_strength', 'plan_interaction', 'strength_curve',
           'middle_share_interval', 'grad_cam']

_HOMES = dict(InteractionSettings='estimate', interaction_strength='estimate', plan_interaction='estimate',
              strength_curve='curves', middle_share_interval='curves', grad_cam='gradcam')


def __getattr__(name):
    if name in _HOMES:  # loaded on first use: captum and matplotlib only when asked for
        return getattr(importlib.import_module(f'moga_lab.analysis.{_HOMES[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
