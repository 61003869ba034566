"""cnnrun's config groups (Hydra finds them as ``pkg://cnnrun.conf``); shipped as the package ``cnnrun.conf``."""
