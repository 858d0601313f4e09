"""The shared core: config, errors, base models, the input guard, claim checks, the feedback store."""
