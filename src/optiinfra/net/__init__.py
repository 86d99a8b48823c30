"""Outbound network access: the checks every call to a URL someone registered goes through."""
