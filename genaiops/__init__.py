"""genaiops shared core: settings, errors, token counter, model providers and the CLI."""

__version__ = "0.1.0"
