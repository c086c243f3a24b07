"""Data access: turn prefetch (or, later, FHIR searches) into validated FHIR R4 resources."""
