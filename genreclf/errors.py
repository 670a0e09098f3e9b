"""The one exception tree of genreclf: every error a user can meet says what went wrong and what to do."""


class GenreclfError(Exception):
    """Base of every error genreclf raises on purpose."""


class ConfigError(GenreclfError):
    """A setting, parameter or config file is missing or wrong."""


class SourceError(GenreclfError):
    """A catalog source (a folder, Spotify, YouTube) cannot give what was asked."""


class TransientSourceError(SourceError):
    """A source failed in a way that a later retry may fix (HTTP 429/5xx, timeouts)."""


class BotCheckError(TransientSourceError):
    """YouTube asked to confirm we are not a bot: about this machine, not the video. Not remembered as the track's
    failure, and its batch stops asking (each further request makes a block likelier)."""


class AudioError(GenreclfError):
    """An audio file cannot be decoded or is unusable (empty, silent, too short)."""


class StorageError(GenreclfError):
    """The object store cannot be reached, or a key is missing or corrupt."""


class DataError(GenreclfError):
    """A catalog, a dataset or a manifest is inconsistent (no rows, unknown split, mixed feature configs)."""


class ModelError(GenreclfError):
    """A model cannot be created, trained, loaded or promoted."""
