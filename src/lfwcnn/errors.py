"""The one exception type users see: its message is the whole, one-line explanation."""


class LfwcnnError(Exception):
    """Bad input or a failed step; the message names the file, key or value at fault."""
