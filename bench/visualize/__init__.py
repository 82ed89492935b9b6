"""What a network learned: filters, activations, representation space and
optimisation-based visualisations (the ``faithbench visualize`` job)."""
