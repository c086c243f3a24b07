"""CDS Hooks 2.0 protocol layer: models, discovery and service-call routes, error answers.

It knows nothing clinical: services plug in through `CdsService` (see `service.py`).
"""
