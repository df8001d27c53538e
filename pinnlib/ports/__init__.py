"""Ports of pinnlib's loss balancers to other frameworks, each one file that can be copied alone.

* :mod:`pinnlib.ports.torch_balancing`: PyTorch modules; their state (weights, step counter,
  remembered losses, the lookback generator's state) is in buffers, so ``state_dict()`` saves
  it and ``load_state_dict()`` resumes a run exactly.
* :mod:`pinnlib.ports.jax_balancing`: pure ``init``/``update`` functions on an explicit state,
  in optax's style, with the lookbacks' PRNG key in the state.
* :mod:`pinnlib.ports.deepxde_balancing`: a DeepXDE callback that updates the loss weights of
  a DeepXDE model (PyTorch backend) at every step from the latest loss terms.

Each port imports only its framework and NumPy and is tested against the same NumPy golden
cases as the TensorFlow balancers (tests/golden_balancers.py). This package imports none of
them: import the module for the framework you use. The book's appendix "Using these
balancers elsewhere" shows each one on the Helmholtz problem.
"""
