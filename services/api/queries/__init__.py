"""The API's data functions: keyword-only arguments, a session in, typed models out; no HTTP in here."""
