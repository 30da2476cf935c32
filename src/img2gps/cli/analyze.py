"""placeholder: commands are added by the module owner."""
from . import app  # noqa: F401
