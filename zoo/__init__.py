"""modelzoo: build, evaluate, card and publish compressed variants of the models declared in registry.yaml."""

__version__ = "0.1.0"
