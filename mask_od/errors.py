"""The package's base error: every error meant for the user (bad file, bad config, failed step) derives from it, so a
script catches one type and prints one ``error:`` line that names the file."""


class MaskODError(Exception):
    """A problem the message explains to the user (which file, what is wrong, what to do)."""


class DataWarning(UserWarning):
    """Input that is used, but maybe not as the user meant (``<size>`` disagreeing with the image, EXIF rotation)."""
