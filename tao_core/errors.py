"""Errors TAO raises for bad input. The CLI prints them as one line and exits 2."""


class InputError(ValueError):
    """Bad input from the user: the message names the field (or file and row) and the fix."""
