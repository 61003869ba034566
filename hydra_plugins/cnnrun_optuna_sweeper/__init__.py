"""cnnrun's Optuna sweeper for Hydra: ``hydra/sweeper=cnnrun_optuna`` (Bayesian search with pruning and resume).

A Hydra sweeper plugin over current Optuna, with the settings users know from hydra-optuna-sweeper (``n_trials``,
``n_jobs``, ``direction``, ``study_name``, ``storage``, ``sampler``, ``params``) plus ``pruner`` and ``enqueue``.
"""
