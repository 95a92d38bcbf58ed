"""Tools a model's reasoning can call: `sandbox.run_python` runs model-written Python in a
separate, contained process."""
