"""Analysis on any classifier nn.Module: multi-order interactions (Deng et al.) and Grad-CAM (captum).
Nothing here imports moga_lab.training."""
