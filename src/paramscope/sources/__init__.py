"""One module per kind of model source; each turns its input into the same ``Report``."""
