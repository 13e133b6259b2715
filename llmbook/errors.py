"""The package's one shared error type, in a module that imports nothing, so that any
module can raise it without importing another (``llmbook.env`` re-exports it)."""


class MissingRequirement(RuntimeError):
    """A chapter needs something this environment lacks; the message says what to do."""
