"""The CDS services this server offers: each composes data access, clinical core and cards."""
