"""The one shape of "these fields are wrong": `errors` maps a field to its
messages, and the exception's text reads "field: message; field: message",
which pages and problem bodies show as it is."""


class FieldErrors(Exception):
    def __init__(self, errors):
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))
        self.errors = errors
