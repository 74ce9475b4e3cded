"""The errors dlslab raises on purpose. Each carries a message that says what was wrong
and what to do; the CLI prints it without a traceback and exits with `exit_code`."""


class DlsError(Exception):
    """Base class: a failure while running (exit code 1)."""

    exit_code = 1


class UsageError(DlsError):
    """Bad usage or bad input: unknown study or key, wrong type, unreadable file (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config key or value that the study does not accept."""


class DataError(UsageError):
    """Missing, truncated or corrupt data, or data of the wrong shape or rate."""


class BadFileError(DataError):
    """A file that is there but cannot be used: corrupt, malformed, too large for what it
    claims to hold, or of another kind than expected. Not "data missing"."""


class UnsafeFileError(BadFileError):
    """A pickle or checkpoint that would run code when loaded, refused unread."""


class DiskFullError(DlsError):
    """The disk filled up while writing; earlier results are left as they were."""


def did_you_mean(word: str, choices: "list[str] | tuple[str, ...]") -> str:
    """' (did you mean 'x'?)' when `word` is close to one of `choices`, else ''."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
