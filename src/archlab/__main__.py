from archlab.cli import entry

entry()
