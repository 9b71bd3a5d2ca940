"""The command line: parse, load a spec, call one runner, render its result."""
