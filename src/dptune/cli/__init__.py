"""Command line: a thin layer over library functions (``dptune <command> ...``)."""
