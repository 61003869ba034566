"""Lightning training: the LightningModule, the in-memory DataModule and the Trainer factory.

Importing this package imports Lightning (seconds): the CLI imports it only when it trains.
"""
