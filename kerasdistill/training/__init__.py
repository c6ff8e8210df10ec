"""How one model learns from soft labels: the functional learner and its Adam, the
inner-solver interface every algorithm implements, stacks of models trained
together, and the trainer that trains fresh models on given labels (validation,
baselines, test). Below `distill` (which meta-learns through it) and `evaluation`
(which scores labels with it)."""
