"""jibrild: the agent daemon that connects a host to the Garnet API."""

__version__ = "0.1.0"
