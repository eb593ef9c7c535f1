"""Stage logic of the bundle builder: plain Python, one module per stage.

Each stage reads only the inputs it is given on the command line and writes only its
artifacts into `--out`. The Pants rules in `rules/` run each stage as its own process;
`python -m bundler_lib <stage> ...` runs the same code by hand for debugging.
"""
