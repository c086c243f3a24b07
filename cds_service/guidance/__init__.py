"""The full guidance page the cards link to: served by the service itself, the same for every patient."""
