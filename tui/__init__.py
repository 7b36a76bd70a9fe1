"""The Textual app: one client of the core event stream."""
