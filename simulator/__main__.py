"""`python -m simulator`: the specsim command line."""

from .cli import app

app(prog_name="specsim")
