"""physgen: generative models for physics in JAX + Equinox."""
