"""Placeholder (minimal Info); replaced by the debug-switch module."""


class Info:
    def __init__(self, modname):
        self.__dict__["_modname"] = modname

    def __getattr__(self, what):
        return False


getInfo = Info
frame = 0
