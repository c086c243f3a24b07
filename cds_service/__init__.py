"""CDS Hooks 2.0 service: multiple sclerosis with back pain -> possible spinal cord involvement."""

__version__ = "0.1.0"
