"""The training side: from feature tables and a split to trained runs and their metrics.

Data flows one way through these modules (each imports only those above it):

* :mod:`.sequences` -- songs cut into ``seq_len`` chunks and stitched back, for training and
  prediction alike;
* :mod:`.recipes` -- :class:`~.recipes.TrainConfig`, everything a run depends on, and the named
  recipes' defaults (checked by the config schema's rules, :mod:`merflow.schema`);
* :mod:`.data` -- feature tables read into per-clip arrays, aligned with targets or labels, and
  their z-scoring (:class:`~.data.ZScore`);
* :mod:`.run_data` -- one run's training and validation parts, normalized and fingerprinted;
* :mod:`.recipe_pieces` -- crops, masks, sampling, schedules: what a recipe plugs into the loop;
* :mod:`.baselines` -- fitted baselines behind the predictor interface networks share;
* :mod:`.fusion` -- views fused early or late; :mod:`.fitted` loads a baseline or late-fused views;
* :mod:`.inference` -- a trained network behind that interface, and a finished run's predictor;
* :mod:`.tracking` -- what a run reports while it trains (history, status, TensorBoard);
* :mod:`.checkpoints` -- ``last.pt`` and ``best.pt``: what survives between epochs, and when a
  checkpoint may be resumed;
* :mod:`.training` -- the loop;
* :mod:`.evaluation` -- predictions and metrics of a trained run on a part of its split.

The networks themselves are :mod:`merflow.models`; what a run folder holds, :mod:`merflow.runs`.
"""
