"""Cards: turn a Decision into CDS Hooks cards, with the wording from the repository's cards/ folder."""
