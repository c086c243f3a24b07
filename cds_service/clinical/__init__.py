"""Clinical core: pure functions from FHIR resources to facts, and from facts to a decision.

Nothing here does I/O after start-up or reads the clock: "now" is always passed in.
"""
