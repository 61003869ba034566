"""Lightning training: the LightningModule, the in-memory DataModule and the Trainer factory.

The config checks of ``trainer``, ``optim``, ``objectives`` and ``dashboard_plan`` load neither torch nor Lightning
(they run before the heavy imports, :func:`cnnrun.run.check_before_imports`); the other modules import Lightning.
"""
