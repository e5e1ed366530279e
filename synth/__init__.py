"""Synthetic county generator (the `synth` stage): fictional children, agency extracts with messy
identifiers, the public area reference, and the ground truth. Entry point: `synth.generate.run`.
See synth/README.md for the process and every parameter."""
